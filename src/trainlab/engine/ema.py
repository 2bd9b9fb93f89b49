"""EMA (Polyak averaging): a moving average of the weights, kept beside the live ones.

The lecture (004, "Exponential Moving Average"): keep training the usual parameters
``theta``, but also keep a copy for test time, updated every ``k`` steps with
``theta_test = (1 - rho) * theta + rho * theta_test``, ``rho`` close to 1 (here ``rho`` is
``training.ema.decay`` and ``k`` is ``training.ema.every``). It averages snapshots in weight
space, an ensemble that costs one model at test time.

With ``training.ema`` set, the run evaluates and delivers the average: validation (hence the
best checkpoint, early stopping and every choice made on validation), the ``best`` checkpoint's
weights, the final ``model.safetensors`` and the test figures in ``summary.json`` are those of
the averaged weights. The ``last`` checkpoint keeps the live weights (training goes on from
them) and, in this callback's state, the average and its update count, so a run killed and
resumed has bit-identical averaged weights. ``summary.json`` also carries the test figures
of the live weights at the end of training under ``raw``, to see what the average bought.

**Batch-norm buffers** (and every other floating-point buffer in the state dict): averaged
with the same decay as the parameters; integer buffers (``num_batches_tracked``) are the live
model's. Why: the running mean and variance must describe the activations of the weights they
are used with, and the averaged weights' activations are close to an average of the recent
live ones, because the average moves slowly (decay ~0.999). It costs nothing (the same foreach
lerp), needs no extra pass over the data, and is timm's default (``ModelEmaV2`` averages the
whole state dict; ``ModelEmaV3`` averages the floats and copies the integer entries) and
torchvision's reference recipe (``ExponentialMovingAverage(..., use_buffers=True)``). The
alternatives: copying the live buffers pairs the average's weights with statistics of other
weights; recomputing them (``torch.optim.swa_utils.update_bn``) is the right thing for SWA's
equal-weight average of far-apart snapshots, but costs a pass over the training data at
every validation.

**Why not ``torch.optim.swa_utils.AveragedModel``** (with ``get_ema_multi_avg_fn``): its
decay is fixed when the function is made (no per-update warm-up), ``update_parameters`` reads
its ``n_averaged`` counter back to the host twice per update (on a GPU, a sync every step,
which the loop avoids),
it rebuilds its tensor lists and regroups them every update, with ``use_buffers=True`` it
averages ``num_batches_tracked`` too (through an integer ``decay * e + (1 - decay) * m``), and
it holds a deep copy of the whole module whose state would need its own place in our
checkpoints. What it does is one ``torch._foreach_lerp_`` per update; that is what
:meth:`EMA.update` does, on tensor lists made once.

Evaluation swaps the averaged tensors into the model's parameters and buffers (``.data``
exchanged, no copies) and swaps them back afterwards (:meth:`EMA.swapped`); at the end of the
run they are swapped in for good (:meth:`EMA.on_fit_end`), so the trainer's model holds the
weights the run delivers. The live tensors stay the same Python objects throughout, so the
optimiser's state still points at them.

Per-step cost: nothing when ``training.ema`` is off (the callback is not there); when on, one
``torch._foreach_lerp_`` every ``every`` steps and no host sync (the decay is a Python float
of the update count).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from trainlab.engine.callbacks import Callback
from trainlab.errors import RunFolderError

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer

__all__ = ["EMA", "ema_decay"]


def ema_decay(decay: float, updates: int, warmup: bool) -> float:
    """The decay of the update that follows ``updates`` earlier ones.

    With ``warmup``: ``min(decay, (1 + n) / (10 + n))`` (TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``; timm's V3 uses a power law instead), so the
    first updates mostly take the live weights instead of dragging the random initialisation
    along for ~1/(1-decay) steps.
    """
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


class EMA(Callback):
    """Keeps ``ema = lerp(ema, live, 1 - decay)`` of the model's floating-point state, updated
    after every ``every``-th optimiser step, starting from the weights the run starts with."""

    key = "ema"

    def __init__(self, decay: float, every: int = 1, warmup: bool = True) -> None:
        self.decay, self.every, self.warmup = decay, every, warmup
        self.updates = 0  # averaging updates done so far (the warm-up's n)
        self.names: list[str] = []  # state-dict names of the averaged tensors
        self.live: list[torch.Tensor] = []  # the model's own parameters and buffers
        self.averaged: list[torch.Tensor] = []  # the average (the live ones while swapped)
        self._loaded: dict[str, torch.Tensor] | None = None  # from a checkpoint, before bind

    # ------------------------------------------------------------------------------------------
    # the average

    def bind(self, model: torch.nn.Module) -> None:
        """Pick the model's floating-point state (parameters and persistent buffers, each tensor
        once even when shared) and start the average from it, or from a loaded checkpoint."""
        names, live, seen = [], [], set()
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and id(tensor) not in seen:
                seen.add(id(tensor))
                names.append(name)
                live.append(tensor)
        self.names, self.live = names, live
        with torch.no_grad():
            self.averaged = [t.detach().clone() for t in live]
        if self._loaded is not None:
            loaded, self._loaded = self._loaded, None
            self._copy_in(loaded)

    @torch.no_grad()
    def update(self) -> None:
        """One averaging step: a single foreach lerp over every averaged tensor."""
        weight = 1.0 - ema_decay(self.decay, self.updates, self.warmup)
        torch._foreach_lerp_(self.averaged, self.live, weight)
        self.updates += 1

    def _swap(self) -> None:
        """Exchange the model's tensors with the held ones (``.data`` only: no copies, and the
        model's parameter objects, which the optimiser holds, stay the same)."""
        with torch.no_grad():
            for i, tensor in enumerate(self.live):
                held = self.averaged[i]
                self.averaged[i] = tensor.data
                tensor.data = held

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The model holds the other set of tensors inside the block (the average during
        training; the live weights once :meth:`on_fit_end` has delivered the average), and its
        own again after it, also when the block raises."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def averaged_state(self) -> dict[str, torch.Tensor]:
        """The averaged tensors by state-dict name (before the run's end has swapped them in)."""
        return dict(zip(self.names, self.averaged, strict=True))

    # ------------------------------------------------------------------------------------------
    # events

    def on_fit_start(self, trainer: Trainer) -> None:
        self.bind(trainer.model)

    def on_batch_end(self, trainer: Trainer) -> None:
        if trainer.step % self.every == 0:
            self.update()

    def on_fit_end(self, trainer: Trainer) -> None:
        """Deliver the average: the model holds it from now on (the live weights are kept here,
        for the ``raw`` figures). Runs before early stopping's, whose restored best weights are
        an average too, taken while validation had the average swapped in."""
        if self.live:
            self._swap()

    # ------------------------------------------------------------------------------------------
    # checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The average (on the CPU, so a checkpoint loads on any device) and its update count."""
        pairs = zip(self.names, self.averaged, strict=True)
        tensors = {name: t.detach().to("cpu", copy=True) for name, t in pairs}
        return {"updates": self.updates, "tensors": tensors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Before :meth:`bind` (a resume) the tensors wait for it; during a run (a rollback)
        they are copied into the average at once."""
        self.updates = state["updates"]
        if self.live:
            self._copy_in(state["tensors"])
        else:
            self._loaded = dict(state["tensors"])

    def _copy_in(self, tensors: dict[str, torch.Tensor]) -> None:
        if sorted(tensors) != sorted(self.names):
            missing = sorted(set(self.names) ^ set(tensors))
            raise RunFolderError(
                f"the checkpoint's EMA state does not fit this model (differing: "
                f"{', '.join(missing[:4])})"
            )
        with torch.no_grad():
            for name, tensor in zip(self.names, self.averaged, strict=True):
                tensor.copy_(tensors[name])
