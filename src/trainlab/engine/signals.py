"""SIGTERM / Ctrl-C: stop at the next step boundary with a checkpoint, never mid-update.

While a run trains, the first SIGTERM or SIGINT only sets a flag; the loop sees it after the
current step, saves a ``last`` checkpoint and raises :class:`Interrupted` (exit code 143 or
130). A second signal during that save is ignored, so the save either completes or, if the
process is killed outright, leaves the previous checkpoint (saves are atomic). A third restores
the default behaviour for a user who really wants out.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

from trainlab.errors import TrainlabError

__all__ = ["StopSignals", "Interrupted"]

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(TrainlabError):
    """Training stopped on a signal after saving a checkpoint; the message says how to resume."""

    prefix = "stopped"

    def __init__(self, signum: int, step: int, run_dir: Path, processes: int = 1) -> None:
        name = signal.Signals(signum).name
        again = f"trainlab train --out {run_dir} --resume"
        if processes > 1:  # under torchrun
            again = f"torchrun --nproc-per-node {processes} -m {again}"
        super().__init__(
            f"{name} received: checkpoint saved at step {step} in {run_dir}; resume with: {again}"
        )
        self.exit_code = 128 + signum


class StopSignals:
    """Context manager that turns SIGTERM/SIGINT into a flag (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._count = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._count += 1
        if self.received is None:
            self.received = signum
        if self._count >= 3:  # the user insists: give the default behaviour back
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in HANDLED}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
