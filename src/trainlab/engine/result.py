"""What a finished run returns: validation figures to select on, test figures to report.

Anything built on a run (a search, a ladder, a user's Optuna objective) must select on
``RunResult.val``; ``test`` is there to be reported once, at the end, never to choose by.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.errors import RunFolderError

__all__ = ["RunResult"]


@dataclass(frozen=True)
class RunResult:
    """A trained run.

    ``val``: the metrics of the best validation (``training.early_stopping.metric`` when early
    stopping is on, else ``val_acc``) with its ``epoch``; empty without a validation split.
    ``test``: test loss, accuracy and top-k of the final weights. ``summary``: all of
    ``summary.json``.
    """

    val: dict[str, float]
    test: dict[str, float]
    run_dir: Path
    summary: dict[str, Any] = field(repr=False)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> RunResult:
        test = {k: v for k, v in summary.items() if k.startswith("test_")}
        return cls(dict(summary["val"]["best"]), test, Path(summary["run_dir"]), summary)

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResult:
        """The result of a finished run folder (its ``summary.json``)."""
        path = Path(run_dir) / "summary.json"
        try:
            return cls.from_summary(json.loads(path.read_text()))
        except FileNotFoundError:
            raise RunFolderError(f"{path}: not found (the run has not finished)") from None
        except (ValueError, KeyError) as exc:
            raise RunFolderError(f"{path}: not a trainlab summary ({exc})") from None
