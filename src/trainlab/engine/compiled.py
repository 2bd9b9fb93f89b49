"""``training.compile``: the training step's forward under ``torch.compile``, or eager.

Only the step's model is compiled; evaluation, checkpoints and the Predictor use the module
itself (the compiled one shares its parameters), so a run folder is the same either way.
torch.compile compiles on the first call; when it cannot (no C++ compiler for inductor, an
unsupported Python, a graph its backend rejects), that call fails before the graph runs, so
the run warns once, in one line, and trains eagerly from that same step: nothing is lost.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from trainlab.errors import TrainlabWarning

__all__ = ["Compiled", "compiled"]


def _fallback(exc: BaseException) -> None:
    first = next((line for line in str(exc).splitlines() if line.strip()), "")[:160]
    warnings.warn(
        f"training.compile: torch.compile cannot compile this model ({type(exc).__name__}: "
        f"{first}); training eagerly",
        TrainlabWarning,
        stacklevel=4,
    )


class Compiled(nn.Module):
    """``model`` (its only child) called through ``torch.compile(model, backend=backend)``
    until compiling fails once; from then on called eagerly."""

    def __init__(self, model: nn.Module, backend: str) -> None:
        super().__init__()
        self.eager = model
        try:
            fast = torch.compile(model, backend=backend)
        except RuntimeError as exc:  # torch.compile unavailable here (an unsupported Python)
            _fallback(exc)
            fast = None
        object.__setattr__(self, "fast", fast)  # not a child: no second copy of the weights

    def forward(self, *args: Any) -> Any:
        if self.fast is not None:
            from torch._dynamo.exc import TorchDynamoException

            try:
                return self.fast(*args)
            except TorchDynamoException as exc:  # raised while compiling: before the graph ran
                _fallback(exc)
                object.__setattr__(self, "fast", None)
        return self.eager(*args)


def compiled(model: nn.Module, setting: bool | str) -> nn.Module:
    """What the step calls for ``training.compile`` (``true``: inductor)."""
    if setting is False:
        return model
    return Compiled(model, "inductor" if setting is True else str(setting))
