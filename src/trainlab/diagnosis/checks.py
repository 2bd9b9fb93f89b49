"""The registry of the doctor's checks and what each is given (:class:`Context`).

Each check module registers its own check at its end (``@CHECK_REGISTRY.register(NAME)``), a
thin adapter from the context to its pure functions; ``trainlab.diagnosis.doctor`` imports the
modules in lecture 002's order, which is the order the checks run in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainlab.registry import Registry

if TYPE_CHECKING:
    import torch

    from trainlab.engine.build import Parts
    from trainlab.recipe import Recipe

__all__ = ["CHECK_REGISTRY", "Context", "training_batches"]

CHECK_REGISTRY = Registry("check", "the doctor's checks, in the order they run (doctor --checks)")


@dataclass(frozen=True)
class Context:
    """What every check is given: the recipe (resolved, as the run uses it), its built parts
    (shared: a check that trains does so on a copy), the report folder for figures, the run
    folder (``--run``) and the seeds of the lr range test."""

    recipe: Recipe
    parts: Parts
    out: Path
    run_dir: Path | None
    seeds: tuple[int, ...]


def training_batches(parts: Parts, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` batches of epoch 0 exactly as the trainer makes them: augmented,
    mixed and preprocessed (one full batch for full-batch optimisers)."""
    if parts.needs_closure:
        return [parts.loader.full_batch()]
    return list(itertools.islice(parts.loader.epoch(0), count))
