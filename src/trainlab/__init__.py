"""trainlab: train neural networks in PyTorch from one YAML recipe, the way the lectures teach.

Public API::

    import trainlab
    summary = trainlab.train("recipes/digits.yaml", ["optimizer.lr=0.003"], out="runs/a")
    report = trainlab.evaluate("runs/a")
"""

from trainlab.api import augment_preview, doctor, evaluate, resolve_recipe, train
from trainlab.errors import DataError, RecipeError, RunFolderError, TrainlabError, TrainlabWarning
from trainlab.recipe import Recipe, load_recipe

__all__ = [
    "train",
    "evaluate",
    "doctor",
    "resolve_recipe",
    "augment_preview",
    "Recipe",
    "load_recipe",
    "TrainlabError",
    "RecipeError",
    "DataError",
    "RunFolderError",
    "TrainlabWarning",
]
__version__ = "0.1.0"
