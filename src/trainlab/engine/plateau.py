"""``reduce_on_plateau``: the one schedule that reads validation, as a callback on the loop.

Lecture 004: "divide the learning rate by 10 when the validation error plateaus". The rule is
:class:`trainlab.optim.schedules.Plateau` (torch's ReduceLROnPlateau on plain numbers); this
callback feeds it each validation and sets the run's ``parts.lr.scale``. Its state is in every
checkpoint, so a resumed run continues with the same scale and counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainlab.engine.callbacks import Callback
from trainlab.errors import RecipeError
from trainlab.optim.schedules import SCHEDULES, Plateau, ScaledLR

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer

__all__ = ["ReduceOnPlateau", "schedule_callbacks"]


class ReduceOnPlateau(Callback):
    """Feeds each validation's metric to :class:`Plateau` and sets the run's ``lr.scale``.

    The scale it sets applies from the next step on; its state is in every checkpoint, and a
    resumed (or rolled back) run puts the saved scale back on the trainer's ``parts.lr``.
    """

    key = "reduce_on_plateau"

    def __init__(self, metric: str, plateau: Plateau) -> None:
        self.metric, self.plateau = metric, plateau
        self.lr: ScaledLR | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReduceOnPlateau:
        """The callback for ``schedule: {name: reduce_on_plateau, ...}``'s parameters."""
        params = dict(params)
        metric = params.pop("metric")
        mode = "min" if metric == "val_loss" else "max"
        return cls(metric, Plateau(mode=mode, **params))

    def on_fit_start(self, trainer: Trainer) -> None:
        if not isinstance(trainer.parts.lr, ScaledLR):
            raise TypeError(
                "schedule reduce_on_plateau needs parts.lr built by trainlab.build (a ScaledLR)"
            )
        self.lr = trainer.parts.lr
        self._apply()

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            raise RecipeError(
                f"schedule.metric={self.metric}: validation reports only {', '.join(metrics)}"
            )
        self.plateau.update(metrics[self.metric], trainer.parts.lr.base_lr)
        self._apply()

    def _apply(self) -> None:
        if self.lr is not None:
            self.lr.scale = self.plateau.scale

    def state_dict(self) -> dict[str, Any]:
        return self.plateau.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau.load_state_dict(state)
        self._apply()  # rolled back during a fit: the lr follows at once


def schedule_callbacks(name: str, params: dict[str, Any]) -> list[Callback]:
    """The callbacks a schedule needs beside ``lr(step)``: ``reduce_on_plateau``'s, else none."""
    if SCHEDULES.get(name).info.get("plateau", False):
        return [ReduceOnPlateau.from_params(params)]
    return []
