"""The trainer's NaN/inf guard, checked lazily: no host sync and no extra kernel per step.

A per-step guard (the :class:`~trainlab.engine.step.Step` one: a gradient norm, then one
boolean read back) costs 60-80 us a step on a 2-core CPU, more than everything else trainlab
adds to a hand loop, and a host-device sync per step on a GPU. Its promise is only needed where
state leaves the process: nothing non-finite may reach a checkpoint, a snapshot or the log.
So the trainer checks there: the loss sum of the logging window (the loop already keeps it
on the device) when it logs or saves, and every trained weight at the end of each epoch
(before validation, ``best`` and ``last``). A non-finite loss makes the next weights
non-finite, and a non-finite gradient makes the updated weights non-finite, so one of the two
checks sees any bad step before its effect is saved.

When one does, the trainer goes back to the last good state (the last checkpoint, or the start
of the run held in memory until the first checkpoint exists) and replays to that point with the
per-step guard on. Replay is exact (the data order and augmentation derive from (seed, epoch,
batch)), so the guard stops at the exact step and batch, before its update, just as a per-step
guard would have: ``stop`` raises there, ``rollback`` skips that batch. The cost of a bad step
is the replay, once; the cost of a good run is nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["Diverged", "all_finite", "frozen_copy"]


class Diverged(Exception):  # noqa: N818  (internal signal, never reaches a user)
    """Raised inside the epoch when a lazy check found a non-finite loss sum or weight at
    ``step``; the trainer replays from the last good state with the per-step guard on."""

    def __init__(self, step: int) -> None:
        super().__init__(f"non-finite by step {step}")
        self.step = step


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every value of ``tensors`` is finite: one norm per tensor (a single kernel on
    CUDA) and one host sync; a sum of norms is finite iff every tensor is."""
    tensors = [t for t in tensors if t.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors)).sum()))


def frozen_copy(
    weights: dict[str, torch.Tensor], state: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A checkpoint held in memory (the run's start, before any is on disk): copies, so the
    training that follows does not change it; the weights in host memory, as on disk."""
    return {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}, copy.deepcopy(state)
