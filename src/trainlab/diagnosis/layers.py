"""Check 3, the layers: activation statistics at init and after some training steps, gradient
flow, update/weight ratios (lecture 000's histograms and the course notes' ratio) and symmetric
units, run on a copy of the recipe's model with the recipe's own step.

Four findings, one cause each: ``layers.activations`` (init.scale, units.dead, units.saturated,
or lr.high when a healthy init breaks during the steps), ``layers.gradients`` (gradients),
``layers.updates`` (lr.high, lr.low) and ``layers.symmetry`` (init.symmetric). They tell one
story (:func:`judge_layers`, by ``diagnosis.story.explain``): a symmetric init explains every
other symptom (a zero weight's update ratio is no evidence about the learning rate), and every
lr.high finding carries the learning rate the measured update ratio suggests.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainlab.diagnosis.activations import LayerStats, Setting, activation_stats, check_activations
from trainlab.diagnosis.checks import CHECK_REGISTRY, Context, training_batches
from trainlab.diagnosis.findings import Finding
from trainlab.diagnosis.gradients import (
    GradStats,
    check_flow,
    check_symmetry,
    check_updates,
    gradient_stats,
)
from trainlab.diagnosis.story import explain
from trainlab.engine.step import Step

if TYPE_CHECKING:
    from trainlab.engine.build import Parts
    from trainlab.recipe import Recipe

__all__ = ["PROBE_STEPS", "judge_layers", "layer_findings"]

#: optimiser steps the check takes besides training: one measured (and undone) on the init's
#: weights and one after training; they count towards the check's budget of ``steps``
PROBE_STEPS = 2


def judge_layers(
    acts_init: list[LayerStats],
    acts_after: list[LayerStats] | None,
    grads_init: list[GradStats],
    grads_after: list[GradStats] | None,
    setting: Setting,
    *,
    updates: Finding | None = None,
    full_batch: bool = False,
) -> list[Finding]:
    """The four layer findings from the measurements, as one story. ``updates``: a
    ``layers.updates`` finding judged elsewhere (the monitor judges it where the lr peaks)."""
    kinds = [s.kind for s in acts_init]
    acts = check_activations(acts_init, acts_after, setting)
    flow = check_flow(grads_init, grads_after, kinds, setting)
    if updates is None:
        updates = check_updates(grads_init, grads_after, setting, full_batch)
    symmetry = check_symmetry(grads_init, grads_after, kinds, setting)
    return explain([acts, flow, updates, symmetry])


def _weights(parts: Parts, model: torch.nn.Module, opt, x, y) -> list[GradStats]:
    """Gradient, weight and one (undone) step's update of every weight on the batch (x, y);
    a closure optimiser steps through a closure over the same batch."""
    model.train()

    def loss() -> torch.Tensor:
        with parts.autocast():
            scores = model(x)
        return parts.loss_fn(scores.float(), y)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        return value

    return gradient_stats(model, loss(), opt, closure if parts.needs_closure else None)


def layer_findings(
    parts: Parts, out: Path, steps: int = 50, recipe: Recipe | None = None
) -> list[Finding]:
    """Activation statistics at init and after training steps, gradient flow, update/weight
    ratios at the recipe's base learning rate (warm-up would hide them) and symmetric units,
    on a copy of ``parts.model``. At most ``steps`` optimiser steps in all (``PROBE_STEPS`` of
    them measure updates and are undone); a full-batch optimiser (L-BFGS) trains one step.
    ``recipe`` (default ``parts.recipe``) is what the advice must not repeat."""
    setting = Setting.of(recipe if recipe is not None else parts.recipe)
    model = copy.deepcopy(parts.model)
    opt = parts.fresh_optimizer(model, weight_decay=0.0)
    step = Step.of(parts, model, opt)
    full = parts.needs_closure
    batches = training_batches(parts, max(1, steps - PROBE_STEPS))
    probe_x, probe_y = batches[0]
    acts_init = activation_stats(model, probe_x)
    grads_init = _weights(parts, model, opt, probe_x, probe_y)
    model.train()
    taken = 0
    for x, y in batches:
        done = step.take(x, y, parts.base_lr)
        if not done.updated:
            break  # a non-finite loss or gradient: the statistics below say where
        taken += 1
    acts_after = activation_stats(model, probe_x)
    grads_after = _weights(parts, model, opt, probe_x, probe_y)
    from trainlab.diagnosis.layers_plot import plot_layers

    plot_layers(acts_init, acts_after, grads_after, out / "layers.png", grads_init=grads_init)
    findings = judge_layers(
        acts_init, acts_after, grads_init, grads_after, setting, full_batch=full
    )
    first = findings[0]
    counted = {"steps": taken, "optimizer_steps": taken + PROBE_STEPS, "full_batch": full}
    findings[0] = dataclasses.replace(
        first, values={**first.values, **counted}, figures=("layers.png",)
    )
    return findings


@CHECK_REGISTRY.register("layers")
def _check(ctx: Context) -> list[Finding]:
    """Activations, gradient flow, update/weight ratios and symmetric units, at init and after
    at most 50 optimiser steps."""
    return layer_findings(ctx.parts, ctx.out, steps=50, recipe=ctx.recipe)
