"""THE optimisation step: forward, loss (+ penalty), backward, clip, guard, decay, update.

Every code path that trains goes through :class:`Step`: the trainer, the lr range test and the
100-iteration rule, the overfit check and its label probe, the doctor's layer check (and later
search and EMA). One step means one definition of what a recipe's update is, so a diagnosis
measures the update training will take (a test checks N lr-finder steps leave the trainer's
weights).

Host syncs: none, except the per-step NaN/inf guard's one boolean (``guard``), which stops
before a non-finite update reaches the weights. The diagnosis's steps use it; the trainer
checks lazily instead, where state leaves the process, and turns it on only to replay up to a
step found bad (:mod:`trainlab.engine.guard`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainlab.nn.regularizers import noise_off
from trainlab.optim.optimizers import apply_decoupled_decay
from trainlab.optim.penalties import weight_penalty

if TYPE_CHECKING:
    from trainlab.engine.build import Parts
    from trainlab.engine.distill import Distillation

__all__ = ["Step", "StepOut"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class StepOut:
    """What one step leaves behind, on the device (reading any of it back is a host sync).

    ``loss`` is the data loss of the batch before the update (no penalty); ``norm`` the global
    gradient norm when clipping or the guard computed one (the guard's is the sum of per-tensor
    norms: finite iff every gradient is); ``updated`` is False when the guard refused the update.
    """

    loss: torch.Tensor
    scores: torch.Tensor
    norm: torch.Tensor | None
    updated: bool


class Step:
    """The recipe's update over one model and optimiser; call it with a batch and an lr."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        autocast: Callable[[], Any] = contextlib.nullcontext,
        grad_clip: float | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        decay_params: list[torch.Tensor] | None = None,
        guard: bool = True,
        needs_closure: bool = False,
        distill: Distillation | None = None,
        scaler: torch.amp.GradScaler | None = None,
        channels_last: bool = False,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.distill = distill  # None: the plain loss, at no extra cost
        self.scaler = scaler  # fp16: loss scaling; a step with inf/NaN gradients is skipped
        self.channels_last = channels_last
        self.needs_closure = needs_closure
        self.autocast, self.grad_clip, self.guard = autocast, grad_clip, guard
        self.l1, self.l2 = l1, l2
        self.penalised = l1 > 0 or l2 > 0
        self.decay_params = list(decay_params or [])
        self.decoupled = any(g.get("decoupled_wd") for g in optimizer.param_groups)
        self.trained = [p for p in model.parameters() if p.requires_grad]  # frozen: grad None
        # discriminative rates (optimizer.pretrained_lr_scale): each group's lr is lr * scale;
        # None when every scale is 1, so set_lr stays one store per group
        scales = [g.get("lr_scale", 1.0) for g in optimizer.param_groups]
        self.lr_scales = scales if any(s != 1.0 for s in scales) else None

    @classmethod
    def of(
        cls,
        parts: Parts,
        model: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> Step:
        """The step of ``parts``' recipe, over its model and optimiser or over given ones (a
        copy the diagnosis trains); the penalty then covers the given model's weights."""
        from trainlab.engine.build import grad_scaler
        from trainlab.optim.optimizers import param_groups

        recipe = parts.recipe
        model = parts.model if model is None else model
        reg = recipe.regularization
        groups = param_groups(model, reg.decay_bias_and_norm)
        return cls(
            model,
            parts.optimizer if optimizer is None else optimizer,
            parts.loss_fn,
            autocast=parts.autocast,
            grad_clip=recipe.training.grad_clip,
            l1=reg.l1,
            l2=reg.l2,
            decay_params=[p for g in groups if g["decay"] for p in g["params"]],
            guard=recipe.training.nonfinite != "ignore",
            needs_closure=parts.needs_closure,
            distill=parts.distill,
            scaler=grad_scaler(recipe.training.precision, parts.device),
            channels_last=recipe.training.channels_last,
        )

    def set_lr(self, lr: float) -> None:
        if self.lr_scales is None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            return
        for group, scale in zip(self.optimizer.param_groups, self.lr_scales, strict=True):
            group["lr"] = lr * scale

    def penalty(self) -> torch.Tensor:
        """l1 * sum|w| + l2/2 * sum w^2 over the decayed weights, added to the loss."""
        return weight_penalty(self.decay_params, self.l1, self.l2)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> StepOut:
        self.set_lr(lr)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            scores = self.model(x)
            soft = None if self.distill is None else self.distill.targets(x)
        if soft is None:  # inlined data_loss: the plain step pays no extra call
            loss = self.loss_fn(scores.float(), y)
        else:
            loss = self.distill.loss(scores.float(), y, soft, self.loss_fn)
        self.optimizer.zero_grad(set_to_none=True)
        total = loss + self.penalty() if self.penalised else loss
        (total if self.scaler is None else self.scaler.scale(total)).backward()
        norm = None
        if self.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.trained, self.grad_clip, foreach=True)
        loss = loss.detach()
        if self.guard:  # under fp16 inf/NaN gradients are the scaler's to skip: the loss only
            if self.scaler is None and norm is None:
                norm = self.grad_norm()
            checked = loss if self.scaler is not None else loss + norm
            if not bool(torch.isfinite(checked)):  # the one host sync of a guarded step
                return StepOut(loss, scores.detach(), norm, updated=False)
        if self.decoupled:
            apply_decoupled_decay(self.optimizer)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return StepOut(loss, scores.detach(), norm, updated=True)

    def data_loss(
        self, scores: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None
    ) -> torch.Tensor:
        """The recipe's loss, or with ``distill`` its mix with the teachers' soft targets
        ``soft`` (computed on the same batch x, in the same autocast)."""
        if soft is None:
            return self.loss_fn(scores, y)
        return self.distill.loss(scores, y, soft, self.loss_fn)

    def take(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> StepOut:
        """One step of the recipe's kind: :meth:`full_batch` for closure optimisers (L-BFGS),
        else a mini-batch step (what a diagnosis that trains calls)."""
        return self.full_batch(x, y, lr) if self.needs_closure else self(x, y, lr)

    def grad_norm(self) -> torch.Tensor:
        """The sum of the per-tensor gradient norms: one kernel, finite iff every gradient is."""
        grads = [p.grad for p in self.trained if p.grad is not None]
        if not grads:
            return torch.zeros((), device=next(iter(self.trained), torch.zeros(())).device)
        return torch.stack(torch._foreach_norm(grads)).sum()

    def full_batch(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> StepOut:
        """One step of a closure optimiser (L-BFGS) on the whole batch. Inside the closure every
        random layer is off (dropout, DropConnect, stochastic depth, fractional pooling; the
        full batch is not augmented), as lecture 002 advises for full-batch methods: a line
        search that sees another loss at the same weights cannot converge. The returned loss
        and scores are measured after the step, in eval mode (no batch-norm statistics move)."""
        self.set_lr(lr)
        with self.autocast():  # the teachers see the full batch once, not once per evaluation
            soft = None if self.distill is None else self.distill.targets(x)

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                scores = self.model(x)
            loss = self.data_loss(scores.float(), y, soft)
            total = loss + self.penalty() if self.penalised else loss
            total.backward()
            return total

        with noise_off(self.model):
            self.optimizer.step(closure)
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.autocast():
                scores = self.model(x).float()
            return StepOut(self.data_loss(scores, y, soft).detach(), scores, None, updated=True)
        finally:
            self.model.train(was)
