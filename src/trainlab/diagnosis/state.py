"""The doctor leaves the caller's global state as it found it: building a Trainer seeds the
RNGs and sets torch's determinism switches, which a diagnosis must not change for the caller."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["preserved_global_state"]


@contextlib.contextmanager
def preserved_global_state() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's RNGs (CPU and CUDA), torch's determinism switches
    and cuDNN's benchmark flag: building a Trainer seeds and sets all of them."""
    py, np_state = random.getstate(), np.random.get_state()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    bench = torch.backends.cudnn.benchmark
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark = bench
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
