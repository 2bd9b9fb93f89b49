"""Training-time augmentation: one registered factory per technique, two paths each (``base``)."""

from trainlab.data.augment import (
    erasing,  # noqa: F401  (registers)
    geometric,  # noqa: F401  (registers)
    mixing,  # noqa: F401  (registers)
    photometric,  # noqa: F401  (registers)
    policies,  # noqa: F401  (registers)
    signal,  # noqa: F401  (registers)
)
from trainlab.data.augment.base import AUGMENTS, Augment, Mixer, Pipeline

__all__ = ["AUGMENTS", "Augment", "Mixer", "Pipeline"]
