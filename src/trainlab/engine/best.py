"""What "better" means for a validation metric: the one rule that early stopping, the best
checkpoint, ``best_epoch`` and :class:`~trainlab.engine.result.RunResult` all read.

The trainer owns one :class:`Best` and updates it after every validation, before any callback
sees the metrics, so every reader agrees on which epoch was best. The metric and its margin come
from ``training.early_stopping`` when it is on (its ``min_delta`` is the margin), else
validation accuracy with no margin.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Best", "improved"]


def improved(value: float, best: float | None, metric: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (lower is better for a loss,
    higher for anything else); the first value always does."""
    if best is None:
        return True
    sign = -1.0 if metric.endswith("loss") else 1.0
    return sign * (value - best) > min_delta


class Best:
    """The best validation so far: its metrics, epoch and step, and whether the latest
    validation was it (``improved``)."""

    def __init__(self, metric: str = "val_acc", min_delta: float = 0.0) -> None:
        self.metric, self.min_delta = metric, min_delta
        self.value: float | None = None
        self.epoch = 0
        self.step = 0
        self.metrics: dict[str, float] = {}
        self.improved = False

    def update(self, metrics: dict[str, float], epoch: int, step: int) -> bool:
        """Read one validation; returns (and keeps in ``improved``) whether it is the new best."""
        value = metrics.get(self.metric)
        self.improved = value is not None and improved(
            value, self.value, self.metric, self.min_delta
        )
        if self.improved:
            self.value, self.epoch, self.step, self.metrics = value, epoch, step, dict(metrics)
        return self.improved

    def state_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "epoch": self.epoch,
            "step": self.step,
            "metrics": dict(self.metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.epoch = state["value"], state["epoch"]
        self.step, self.metrics = state["step"], dict(state["metrics"])
        self.improved = False
