"""Helpers shared by the augmentation tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _CountCalls(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def torch_calls(fn: Callable[[], object]) -> int:
    """How many torch functions ``fn`` calls: equal counts for batches of 2 and 64 samples
    show that the batched path has no Python loop over samples."""
    with _CountCalls() as counter:
        fn()
    return counter.calls
