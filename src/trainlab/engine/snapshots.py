"""Snapshot ensembles (Huang et al. 2017, "train 1, get M for free"): the weights at the end
of each cosine cycle of an SGDR schedule, where the lr has annealed to its minimum and the
model sits in a local minimum, saved as ``snapshots/cycle-K.safetensors``.

``trainlab ensemble RUN --snapshots`` averages them like any ensemble. The files are written
atomically and named from the step count alone, so a resumed run re-derives which cycles are
left (resume is exact, so a snapshot written again would hold the same weights).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING

from trainlab.engine.callbacks import Callback
from trainlab.engine.checkpoint import save_weights
from trainlab.optim.schedules import sgdr, sgdr_cycle_ends

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer
    from trainlab.recipe import Recipe

__all__ = ["Snapshots", "snapshot_steps", "SNAPSHOT_DIR", "snapshot_files"]

SNAPSHOT_DIR = "snapshots"


def snapshot_steps(recipe: Recipe, steps_per_epoch: int, total_steps: int) -> list[int]:
    """The step counts after which an SGDR cycle of ``recipe`` ends (warm-up comes first)."""
    scfg = recipe.schedule
    defaults = {
        k: p.default
        for k, p in inspect.signature(sgdr).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    params = {**defaults, **scfg.params()}
    warmup = scfg.warmup_steps or round(scfg.warmup_epochs * steps_per_epoch)
    ends = sgdr_cycle_ends(
        params["period_epochs"], params["period_mult"], steps_per_epoch, total_steps - warmup
    )
    return [warmup + end for end in ends]


def snapshot_files(run_dir: Path) -> list[Path]:
    """A run's snapshot files, in cycle order."""
    files = [
        p for p in (run_dir / SNAPSHOT_DIR).glob("cycle-*.safetensors")
        if p.stem.removeprefix("cycle-").isdigit()
    ]  # fmt: skip
    return sorted(files, key=lambda p: int(p.stem.removeprefix("cycle-")))


class Snapshots(Callback):
    """Saves the exported weights (what ``model.safetensors`` would hold: the weight average
    under ``training.ema``) after each SGDR cycle.

    A cycle's file is rewritten if it exists (atomically): after a NaN/inf rollback the
    weights at that step may differ, and the run's own files must agree with its log."""

    def __init__(self, root: Path, recipe: Recipe) -> None:
        self.root, self.recipe = root, recipe
        self.order: dict[int, int] = {}
        self.pending: list[int] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        steps = snapshot_steps(self.recipe, trainer.steps_per_epoch, trainer.total_steps)
        self.order = {step: k + 1 for k, step in enumerate(steps)}
        self.pending = [step for step in steps if step > trainer.step]

    def on_batch_end(self, trainer: Trainer) -> None:
        """Saves each cycle whose end this step reached; a batch skipped by a NaN/inf rollback
        fires no event, so a cycle ending on it is saved at the next step."""
        if self.pending and trainer.step >= self.pending[0]:
            trainer.verify_finite(weights=True)  # nothing non-finite is saved
            if not trainer.is_writer:  # DDP: rank 0 writes
                self.pending = [s for s in self.pending if s > trainer.step]
                return
        while self.pending and trainer.step >= self.pending[0]:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / f"cycle-{self.order[self.pending.pop(0)]}.safetensors"
            with trainer.averaged():  # training.ema: the average, as model.safetensors holds
                save_weights(path, trainer.weights())
