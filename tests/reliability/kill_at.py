"""Run the trainlab CLI in this process and send it a real signal at one exact moment.

``KILL_AT="trainlab.engine.loop:Trainer.evaluate_split:before:3:KILL"`` sends SIGKILL to this
process just before the third call of ``Trainer.evaluate_split``; ``after`` sends it just after
the call returns. The signal is real (``os.kill`` of our own pid): SIGKILL ends the process on
the spot, SIGTERM goes through trainlab's own handler. Only *when* is chosen here; what happens
then is the real program's. Usage: ``KILL_AT=... python kill_at.py train ARGS...``; under
torchrun, ``KILL_AT_RANK=R`` arms it in process R only.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys


def _arm(spec: str) -> None:
    module_name, attr, when, nth, sig = spec.split(":")
    owner_name, method_name = attr.split(".")
    owner = getattr(importlib.import_module(module_name), owner_name)
    original = getattr(owner, method_name)
    signum = getattr(signal, f"SIG{sig}")
    calls = {"n": 0}

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        hit = calls["n"] == int(nth)
        if hit and when == "before":
            os.kill(os.getpid(), signum)
        result = original(*args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signum)
        return result

    setattr(owner, method_name, wrapper)


if __name__ == "__main__":
    if os.environ.get("KILL_AT_RANK", os.environ.get("RANK", "0")) == os.environ.get("RANK", "0"):
        _arm(os.environ["KILL_AT"])  # under torchrun, KILL_AT_RANK picks the one process
    from trainlab.cli import main

    sys.argv = ["trainlab", *sys.argv[1:]]
    main()
