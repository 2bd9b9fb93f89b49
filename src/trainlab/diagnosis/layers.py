"""Check 3, the layers: activation statistics at init and after some training steps, gradient
flow and update/weight ratios (lecture 000's histograms and the course notes' ratio), as one
check run on a copy of the recipe's model with its own step."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context, training_batches
from trainlab.diagnosis.findings import Finding, most_severe
from trainlab.engine.step import Step

if TYPE_CHECKING:
    from trainlab.engine.build import Parts

__all__ = ["layer_findings"]


def layer_findings(parts: Parts, out: Path, steps: int) -> Finding:
    """Activation statistics at init and after ``steps`` training steps, plus gradient norms
    and update/weight ratios at the recipe's base learning rate (warm-up would hide them)."""
    from trainlab.diagnosis.activations import activation_stats, check_activations
    from trainlab.diagnosis.gradients import check_gradients, gradient_stats
    from trainlab.diagnosis.layers_plot import plot_layers

    model = copy.deepcopy(parts.model)
    opt = parts.fresh_optimizer(model, weight_decay=0.0)
    step = Step.of(parts, model, opt)
    batches = training_batches(parts, steps)
    probe_x = batches[0][0]
    init = activation_stats(model, probe_x)
    model.train()
    taken = 0
    for x, y in batches:
        if not step(x, y, parts.base_lr).updated:
            break  # a non-finite loss or gradient: the statistics below say where
        taken += 1
    after = activation_stats(model, probe_x)
    x, y = batches[0]
    grads = gradient_stats(model, parts.loss_fn(model(x).float(), y), opt)
    plot_layers(init, after, grads, out / "layers.png")
    act, grad = check_activations(init, after), check_gradients(grads)
    status = most_severe(act.status, grad.status)
    advice = "; ".join(a for a in (act.advice, grad.advice) if a)
    return Finding(
        "layers",
        status,
        f"activations: {act.summary}; gradients: {grad.summary}",
        advice,
        {"activations": act.values, "gradients": grad.values, "steps": taken},
        ("layers.png",),
    )


@CHECK_REGISTRY.register("layers")
def _check(ctx: Context) -> Finding:
    """Activations at init and after 50 steps, gradient flow and update/weight ratios."""
    return layer_findings(ctx.parts, ctx.out, steps=50)
