"""Import every module that registers components, so each registry is complete when read.

Kept separate so ``trainlab.recipe`` can validate names without a circular import, and so there
is exactly one list of component families (``trainlab list`` prints them in this order).
"""

from trainlab.data import augment, datasets, formats, preprocess  # noqa: F401
from trainlab.nn import activations, init, losses, models, norms  # noqa: F401
from trainlab.optim import optimizers, schedules  # noqa: F401
