"""What the lr range test returns: one seed's sweep (:class:`SeedSweep`) and the test over all
seeds with the 100-iteration rule (:class:`LRSweep`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SeedSweep", "LRSweep", "SHAPES"]

SHAPES = ("ok", "no_descent", "diverges_at_once", "too_noisy")


@dataclass(frozen=True)
class SeedSweep:
    """One seed's sweep: the lrs and losses per step and what was read off them."""

    seed: int
    lrs: tuple[float, ...]
    losses: tuple[float, ...]  # raw, one per step (the last may be NaN/inf)
    smoothed: tuple[float, ...]  # fastai's bias-corrected EMA
    centred: tuple[float, ...]  # the lag-free running mean the analysis reads
    stop: str  # "end", "diverged" or "nonfinite"
    start_loss: float
    min_loss: float
    min_lr: float | None
    steepest_lr: float | None
    steepest_range: tuple[float, float] | None
    suggestion: float | None
    drop: float  # (reference - min) / reference, reference = min(start, chance loss)
    noise: float  # std of raw loss around the centred curve, before the minimum
    chance_loss: float = math.nan  # the loss of predicting the class frequencies


@dataclass(frozen=True)
class LRSweep:
    """The range test over several seeds, the verdict's inputs, and the 100-iteration rule."""

    seeds: tuple[SeedSweep, ...]
    shape: str
    suggestion: float | None  # absolute lr (what the optimiser sees)
    steepest_range: tuple[float, float] | None
    spread: tuple[float, float] | None  # min and max of the per-seed suggestions
    spread_decades: float
    noise_to_drop: float
    rule_lr: float | None  # the lecture's rule: an lr whose loss drops clearly in rule_iters
    rule_iters: int
    rule_trials: tuple[dict[str, Any], ...] = ()
    min_lr: float = 1e-7
    max_lr: float = 10.0
    steps: int = 100
    lr_scale: float = 1.0  # absolute lr / recipe's optimizer.lr (batch-size scaling rule)
    optimizer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recipe_lr(self) -> float | None:
        """The suggestion as the recipe's ``optimizer.lr`` (undoing the batch-size scaling)."""
        return None if self.suggestion is None else self.suggestion / self.lr_scale

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "suggested_lr": self.suggestion,
            "recipe_lr": self.recipe_lr,
            "steepest_range": list(self.steepest_range) if self.steepest_range else None,
            "spread": list(self.spread) if self.spread else None,
            "spread_decades": self.spread_decades,
            "noise_to_drop": self.noise_to_drop,
            "rule_lr": self.rule_lr,
            "rule_iters": self.rule_iters,
            "rule_trials": list(self.rule_trials),
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "steps": self.steps,
            "optimizer": self.optimizer,
            "lengthened_from": self.extra.get("lengthened_from"),
            "seeds": [
                {
                    "seed": s.seed,
                    "suggestion": s.suggestion,
                    "min_lr": s.min_lr,
                    "steepest_lr": s.steepest_lr,
                    "steepest_range": list(s.steepest_range) if s.steepest_range else None,
                    "stop": s.stop,
                    "steps_run": len(s.losses),
                    "start_loss": s.start_loss,
                    "min_loss": s.min_loss,
                    "drop": s.drop,
                    "chance_loss": s.chance_loss,
                    "noise": s.noise,
                }
                for s in self.seeds
            ],
        }
