"""``--prune-sick``: stop a trial on a diagnosis, not only on a low validation figure.

BTTackler (2026) finds that many trials of a search hit training problems that accuracy reveals
only late; stopping them on a diagnosis saves their epochs. The symptoms are the doctor's own
training monitors, judged after every evaluation from the second epoch on:
- a non-finite loss or gradient (the step guard stops the run; the trial is pruned, not failed);
- a loss that has not moved: the last logged training loss is within 3% of the first;
- the layer monitor's failures (``layers.activations``: dead or saturated units,
  ``layers.gradients``: vanishing or exploding gradients, ``layers.updates``, ``layers.symmetry``),
  judged on the records so far exactly as ``trainlab train`` judges them at the end of a run.
Warnings never prune: only what the doctor calls a failure. The trial's run folder says why
(``stop_reason``), and so does the study (the trial's ``reason``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from trainlab.engine.callbacks import Callback
from trainlab.errors import NonFiniteError

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer
    from trainlab.recipe import Recipe

__all__ = ["SickPruning", "sick_overrides", "MONITOR_EVERY", "NOT_MOVED"]

MONITOR_EVERY = 25  # steps between the layer monitor's records in a --prune-sick trial
NOT_MOVED = 0.97  # the loss has not moved while it stays above this fraction of its first value
FIRST_EPOCH = 2  # diagnose from this epoch on: one epoch is too early to call a loss stuck


def sick_overrides(recipe: Recipe) -> dict[str, Any]:
    """The layer monitor on for the trial (it only reads: the run trains bit for bit the same),
    unless the recipe has it already or takes full-batch steps it cannot hook."""
    if recipe.training.monitor_every or recipe.optimizer.name == "lbfgs":
        return {}
    return {"training.monitor_every": MONITOR_EVERY}


class SickPruning(Callback):
    """Stops the run at the first failure the doctor's monitors find (see the module doc)."""

    key = "sick_pruning"  # in checkpoints: a resumed trial judges from the run's first loss

    def __init__(self) -> None:
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.reason: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"first_loss": self.first_loss, "last_loss": self.last_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first_loss, self.last_loss = state["first_loss"], state["last_loss"]

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        loss = record["loss"]
        if self.first_loss is None:
            self.first_loss = loss
        self.last_loss = loss
        if not math.isfinite(loss) and self.reason is None:
            self._stop(trainer, f"non-finite training loss ({loss}) at step {record['step']}")

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        epoch = trainer.epoch + 1
        if self.reason is not None or epoch < FIRST_EPOCH or trainer.step >= trainer.total_steps:
            return
        first, last = self.first_loss, self.last_loss
        if first and last is not None and last > NOT_MOVED * first:
            why = f"the loss has not moved: {first:.4f} at first, {last:.4f} at epoch {epoch}"
            return self._stop(trainer, why)
        failure = self._layer_failure(trainer)
        if failure:
            self._stop(trainer, failure)

    def _layer_failure(self, trainer: Trainer) -> str | None:
        """The first failing layer finding on the monitor's records so far."""
        every = trainer.recipe.training.monitor_every
        if not every:
            return None
        from trainlab.diagnosis.activations import Setting
        from trainlab.diagnosis.monitor import judge_records, read_records

        records = read_records(trainer.run_dir / "layers.jsonl")
        if len(records) < 2:
            return None
        for finding in judge_records(records, Setting.of(trainer.recipe)):
            if finding.status == "fail":
                return f"{finding.check}: {finding.summary}"
        return None

    def _stop(self, trainer: Trainer, why: str) -> None:
        self.reason = f"sick: {why}"
        trainer.stop(self.reason)

    def sick_reason(self, error: BaseException | None) -> str | None:
        """Why the trial is pruned: the diagnosis, or the guard's non-finite stop."""
        if self.reason is not None:
            return self.reason
        if isinstance(error, NonFiniteError):
            return "sick: " + str(error).split(";")[0]
        return None
