"""trainlab: train neural networks in PyTorch from one YAML recipe, the way the lectures teach.

Public API::

    import trainlab
    result = trainlab.train("recipes/digits.yaml", {"optimizer.lr": 3e-3}, out="runs/a")
    result.val["val_acc"], result.test["test_acc"]      # select on val, report test
    predictor = trainlab.load_run("runs/a")              # weights + preprocessing, no dataset
    predictor.predict_proba(x)

    parts = trainlab.build(recipe)                       # every piece of a run, nothing run
    trainlab.Trainer(parts, "runs/b", [MyCallback()]).fit()

The heavy parts (torch, the engine) are imported on first use, so ``import trainlab`` and the
CLI's ``--help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainlab.errors import DataError, RecipeError, RunFolderError, TrainlabError, TrainlabWarning
from trainlab.version import __version__

if TYPE_CHECKING:
    from trainlab.api import (
        augment_preview,
        doctor,
        evaluate,
        export,
        list_components,
        load_run,
        predict,
        resolve_recipe,
        search,
        train,
        train_seeds,
    )
    from trainlab.diagnosis.findings import Finding
    from trainlab.engine.build import Parts, build
    from trainlab.engine.callbacks import Callback
    from trainlab.engine.loop import Trainer
    from trainlab.engine.result import RunResult
    from trainlab.engine.step import Step, StepOut
    from trainlab.evaluation.predictor import Predictor
    from trainlab.recipe import Recipe, load_recipe

__all__ = [
    "train",
    "train_seeds",
    "search",
    "evaluate",
    "doctor",
    "build",
    "load_run",
    "predict",
    "export",
    "list_components",
    "resolve_recipe",
    "augment_preview",
    "Trainer",
    "Callback",
    "Finding",
    "RunResult",
    "Parts",
    "Step",
    "StepOut",
    "Predictor",
    "Recipe",
    "load_recipe",
    "TrainlabError",
    "RecipeError",
    "DataError",
    "RunFolderError",
    "TrainlabWarning",
    "__version__",
]

# name -> module of the names imported on first use (PEP 562): even the API (pydantic and the
# recipe schema take 0.25 s), so the CLI's --help and --version import neither
_API = (
    "augment_preview", "doctor", "evaluate", "export", "list_components", "load_run",
    "predict", "resolve_recipe", "search", "train", "train_seeds",
)  # fmt: skip
_LAZY = {
    **dict.fromkeys(_API, "trainlab.api"),
    "Recipe": "trainlab.recipe",
    "load_recipe": "trainlab.recipe",
    "build": "trainlab.engine.build",
    "Parts": "trainlab.engine.build",
    "Trainer": "trainlab.engine.loop",
    "Callback": "trainlab.engine.callbacks",
    "RunResult": "trainlab.engine.result",
    "Step": "trainlab.engine.step",
    "StepOut": "trainlab.engine.step",
    "Finding": "trainlab.diagnosis.findings",
    "Predictor": "trainlab.evaluation.predictor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trainlab' has no attribute {name!r}")
