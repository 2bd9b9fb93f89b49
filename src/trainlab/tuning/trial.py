"""One trial of a search: an ordinary ``trainlab train`` run folder, judged on validation only.

The objective trains the recipe with the trial's values as overrides into
``STUDY/trials/STAGE-NNNN`` (so the doctor, predict and compare work on it), reports the
validation metric to Optuna after every evaluation (the pruners' input) and returns the best
validation figure, ``RunResult.val``. Test metrics are written to the run's summary, as every run
writes them, but nothing here reads them: the sampler and the choice of the best see only
validation.

Outcomes, each recorded in the trial's ``trial.json`` and in Optuna's storage:
- complete: the value is the best validation metric;
- pruned: a pruner (or ``--prune-sick``'s diagnosis) stopped it; the run folder is complete
  up to that epoch and says why in ``summary.json``'s ``stop_reason``;
- failed: a NaN/inf, a crash or a bad combination of values; its one-line reason is kept and
  the study goes on;
- interrupted: Ctrl-C or SIGTERM stopped it at a step boundary with a checkpoint; the next run
  of the same command queues it again and it resumes from that checkpoint, exactly.
A retried trial (a worker died mid-trial: Optuna's heartbeat found it stale) resumes the dead
trial's run folder when it is on this machine, or starts it afresh where it is not.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.engine.callbacks import Callback
from trainlab.errors import TrainlabError
from trainlab.files import atomic_write
from trainlab.tuning.slots import SKIPPED, claim
from trainlab.tuning.space import Space

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer
    from trainlab.recipe import Recipe

__all__ = [
    "TrialFailed",
    "SearchInterrupted",
    "TrialReporter",
    "Objective",
    "write_trial_card",
    "best_validation",
    "best_of",
]


class TrialFailed(Exception):
    """A trial that could not finish (its reason is one line); the study records it and goes on."""


class SearchInterrupted(TrainlabError):
    """Ctrl-C/SIGTERM stopped a trial at a step boundary, with a checkpoint: the study stops,
    and the same command continues it (the trial resumes from that checkpoint)."""

    prefix = "stopped"

    def __init__(self, error: TrainlabError | None, number: int, run_dir: Path) -> None:
        signal_name = str(error).split(" received", 1)[0] if error is not None else "SIGINT"
        super().__init__(
            f"{signal_name} received: trial {number} stopped ({run_dir}); run the same search "
            "command again to continue the study (the trial resumes from its last checkpoint)"
        )
        self.exit_code = error.exit_code if error is not None else 130


class TrialReporter(Callback):
    """Reports the validation metric to Optuna after every evaluation; stops the run when the
    pruner says so (the run folder then ends normally, with ``stop_reason`` saying why)."""

    def __init__(self, trial: Any, metric: str, card: dict[str, Any] | None = None) -> None:
        self.trial, self.metric, self.card = trial, metric, card
        self.pruned: str | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """The folder is the run's now (locked, its recipe written): say it is a trial's."""
        if self.card is not None:
            write_trial_card(trainer.run_dir, self.card)

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        epoch = trainer.epoch + 1
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned = f"pruned at epoch {epoch} ({self.metric} {value:.4f})"
            trainer.stop(self.pruned)


def write_trial_card(run_dir: Path, payload: Mapping[str, Any]) -> None:
    """``trial.json`` in the trial's run folder: study, stage, number, params, state, value."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "trial.json", json.dumps(dict(payload), indent=2).encode())


@dataclass
class Objective:
    """Optuna's objective for one stage: ``value = objective(trial)``.

    ``extra_callbacks`` makes the callbacks a trial trains with besides the reporter (the
    ``--prune-sick`` diagnosis); ``on_done`` sees each finished trial's card (the CLI's line).
    """

    recipe: Recipe
    space: Space
    stage: str
    overrides: dict[str, Any]
    trials_dir: Path
    metric: str
    extra_callbacks: Callable[[], Sequence[Callback]] = lambda: ()
    on_done: Callable[[dict[str, Any]], None] | None = None
    study_name: str = ""
    sick_overrides: dict[str, Any] = field(default_factory=dict)
    count: int = 1 << 30  # the stage's trials: a new trial past them ends at once (slots.claim)
    maximize: bool = True

    def __call__(self, trial: Any) -> float:
        import optuna

        skip = claim(trial.study.get_trials(deepcopy=False), trial.number, self.count)
        if skip is not None:  # another worker took this place first
            trial.set_user_attr(SKIPPED, skip)
            raise TrialFailed(f"skipped: {skip}")
        params = self.space.suggest(trial)
        run_dir = self._run_dir(trial)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        card = {"study": self.study_name, "stage": self.stage, "number": trial.number,
                "params": params, "state": "running", "value": None, "reason": None,
                "metric": self.metric, "run_dir": str(run_dir)}  # fmt: skip
        reporter = TrialReporter(trial, self.metric, card)
        callbacks = [reporter, *self.extra_callbacks()]
        try:
            self._train(params, run_dir, callbacks)
        except KeyboardInterrupt:  # Ctrl-C outside the trainer's own handling (loading data...)
            trial.set_user_attr("interrupted", True)
            self._finish(card, run_dir, "interrupted", None, "interrupted")
            raise SearchInterrupted(None, trial.number, run_dir) from None
        except TrainlabError as exc:
            sick = _sick_reason(callbacks, exc)
            if getattr(exc, "prefix", "") == "stopped":  # Ctrl-C / SIGTERM: resume it later
                trial.set_user_attr("interrupted", True)
                self._finish(card, run_dir, "interrupted", None, str(exc))
                raise SearchInterrupted(exc, trial.number, run_dir) from None
            if sick is not None:
                self._finish(card, run_dir, "pruned", None, sick)
                trial.set_user_attr("reason", sick)
                raise optuna.TrialPruned(sick) from None
            return self._failed(trial, card, run_dir, str(exc).splitlines()[0])
        except Exception as exc:  # noqa: BLE001  (a crashed trial is recorded; the study goes on)
            return self._failed(trial, card, run_dir, f"{type(exc).__name__}: {exc}")
        value = best_validation(run_dir, self.metric, self.maximize)
        stopped = reporter.pruned or _sick_reason(callbacks, None)
        if stopped:
            self._finish(card, run_dir, "pruned", value, stopped)
            trial.set_user_attr("reason", stopped)
            raise optuna.TrialPruned(stopped)
        if value is None or not math.isfinite(value):
            return self._failed(trial, card, run_dir, f"no finite {self.metric} was measured")
        self._finish(card, run_dir, "complete", value, None)
        return float(value)

    def _run_dir(self, trial: Any) -> Path:
        """A new trial's folder, or the folder of the trial this one retries (kept in the user
        attributes Optuna copies to a retry)."""
        previous = trial.user_attrs.get("run_dir")
        if previous and Path(previous).parent == self.trials_dir:
            return Path(previous)
        run_dir = self.trials_dir / f"{self.stage}-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        return run_dir

    def _train(self, params: dict[str, Any], run_dir: Path, callbacks: list[Callback]) -> Any:
        from trainlab.runs import train

        overrides = {**self.overrides, **self.sick_overrides, **params}
        resume = (run_dir / "recipe.yaml").is_file()  # a retry of a trial that got that far
        return train(
            self.recipe, overrides, out=run_dir, callbacks=callbacks, resume=resume,
            progress=False, quiet=True,
        )  # fmt: skip

    def _failed(self, trial: Any, card: dict[str, Any], run_dir: Path, reason: str) -> float:
        trial.set_user_attr("reason", reason)
        self._finish(card, run_dir, "failed", None, reason)
        raise TrialFailed(reason)

    def _finish(
        self, card: dict[str, Any], run_dir: Path, state: str, value: float | None, why: str | None
    ) -> None:
        card.update(state=state, value=value, reason=why)
        write_trial_card(run_dir, card)
        if self.on_done is not None:
            self.on_done(card)


def best_validation(run_dir: Path, metric: str, maximize: bool) -> float | None:
    """The best ``metric`` over every validation in the run's ``metrics.jsonl`` (the trial's
    value: the same whichever epoch the trainer keeps, and over all tries of a resumed trial)."""
    path = run_dir / "metrics.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:  # a torn last line of a killed try
            continue
    return best_of(records, metric, maximize)


def best_of(records: Sequence[Mapping[str, Any]], metric: str, maximize: bool) -> float | None:
    """The best finite ``metric`` among ``records`` (None when none has it)."""
    values = [r.get(metric) for r in records]
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if maximize else min(finite)


def _sick_reason(callbacks: Sequence[Callback], error: BaseException | None) -> str | None:
    """The diagnosis that stopped the trial, from a callback that has ``sick_reason``."""
    for cb in callbacks:
        reason = getattr(cb, "sick_reason", None)
        if callable(reason) and (found := reason(error)):
            return found
    return None
