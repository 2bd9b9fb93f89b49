"""The global state a run needs (RNG streams, torch's determinism switches), owned by the run.

Python's, NumPy's and torch's RNGs and ``torch.use_deterministic_algorithms`` are process-wide.
A library that sets them and leaves them set changes what the caller's code does next (a
notebook's next cell, an Optuna objective's next trial). So :func:`build` and :meth:`Trainer.fit`
each enter :func:`run_state`, which saves the caller's state, installs the run's, and puts the
caller's back on the way out, exception or not. Inside, the run's RNG stream continues exactly
where the run left it: the state after ``build`` (or the checkpoint's on resume) is what
``fit`` starts from, so a resumed run draws the same dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["run_state", "preserved_global_state", "seed_everything", "rng_state", "set_rng_state"]


def seed_everything(seed: int, deterministic: bool | str = False) -> None:
    """Seed Python, NumPy and torch; make torch refuse non-deterministic kernels (``True``),
    warn about them (``"warn"``), or allow them (``False``). Changes global state: use
    :func:`run_state` unless that is what you want."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    set_determinism(deterministic)


def set_determinism(deterministic: bool | str) -> None:
    """torch's determinism switches, set every way (a deterministic run must not leave the
    switch on for the next one)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    _deterministic_algorithms(bool(deterministic), warn_only=deterministic == "warn")
    torch.backends.cudnn.benchmark = False


def _deterministic_algorithms(on: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms``, called only when the switch changes: the call
    imports torch's compiler stack (3.5 s of every CLI command's start-up on torch 2.14)."""
    enabled = torch.are_deterministic_algorithms_enabled()
    if (enabled, torch.is_deterministic_algorithms_warn_only_enabled()) != (on, warn_only):
        torch.use_deterministic_algorithms(on, warn_only=warn_only)


@contextlib.contextmanager
def preserved_global_state() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's RNGs (CPU and CUDA), torch's determinism switches,
    cuDNN's benchmark flag and ``CUBLAS_WORKSPACE_CONFIG`` when the block ends."""
    py, np_state = random.getstate(), np.random.get_state()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    bench = torch.backends.cudnn.benchmark
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    # every visible GPU, initialised or not: seeding queues a lazy seed of the CUDA generators
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        _deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark = bench
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


@contextlib.contextmanager
def run_state(rng: int | dict[str, Any], deterministic: bool | str) -> Iterator[None]:
    """Inside: the run's RNG streams (freshly seeded from an int, or a saved
    :func:`rng_state`) and determinism switches; outside, afterwards,
    the caller's, as they were."""
    with preserved_global_state():
        if isinstance(rng, int):
            seed_everything(rng, deterministic)
        else:
            set_rng_state(rng)
            set_determinism(deterministic)
        yield


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, weights-only-loadable."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or -1],
        "python_version": random.getstate()[0],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    py = state["python"]
    gauss = None if py[-1] == -1 else py[-1]
    random.setstate((state["python_version"], tuple(int(v) for v in py[:-1]), gauss))
    np_state = np.random.get_state()
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((np_state[0], keys, state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
