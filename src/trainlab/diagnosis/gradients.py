"""Check 5 of the doctor: gradient flow and the update/weight ratio per layer.

For every Linear/Conv weight: the gradient norm after ``loss.backward()``, the weight norm, and
the *actual* relative change ``|w_after - w_before| / |w_before|`` of one optimiser step (the
classic course notes' "ratio of the updates to the values", healthy around 1e-3). The actual
change is measured rather than ``lr * |grad| / |w|`` because that formula holds for plain SGD
only: Adam's first step moves every weight by about ``lr`` whatever its gradient, momentum and
weight decay add their own terms. The step is taken on the real parameters and undone
(weights and the optimiser's state restored), which is the same as stepping a copy, without
having to rebuild the optimiser's parameter groups for one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from trainlab.diagnosis.findings import Finding
from trainlab.nn.init import WEIGHTED

__all__ = ["GradStats", "gradient_stats", "check_gradients"]

# Gradient flow: each earlier layer's |grad| / |w| (how fast a step moves it) against the last
# layer's. The output layer always leads at init; healthy stacks keep the slowest earlier layer
# within 1e-2 of it (Kaiming + ReLU, depth 8: 0.011; Xavier + tanh: 0.04; the default convnet:
# 0.07). A saturated sigmoid stack (std-1 init) measures 2.5e-4: its hidden layers learn four
# thousand times slower than the output: warn below 1e-3; Xavier + sigmoid (x0.25 per layer)
# reaches 5e-7: fail below 1e-5. Exploding mirrors it (an earlier layer 1e3 x faster).
VANISH_WARN, VANISH_FAIL = 1e-3, 1e-5
# Update/weight ratio: around 1e-3 per the notes. Adam at lr 3e-3 (the default recipe) moves
# conv weights by 1e-2 to 4e-2 of their size on its first step, so the warn band is wide:
# median over layers outside [1e-5, 1e-1] warns (a learning rate far too low or too high); any
# layer moved by more than its own size in one step (ratio > 1) fails: that is divergence.
UPDATE_LOW, UPDATE_HIGH, UPDATE_FAIL = 1e-5, 1e-1, 1.0


@dataclass(frozen=True)
class GradStats:
    """One weight's gradient norm, weight norm, and relative change in one optimiser step."""

    name: str
    grad_norm: float
    weight_norm: float
    update_ratio: float | None  # None when no optimiser was given

    @property
    def relative_grad(self) -> float:
        return self.grad_norm / self.weight_norm if self.weight_norm > 0 else math.inf

    def to_json(self) -> dict:
        return {**asdict(self), "relative_grad": self.relative_grad}


def gradient_stats(
    model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer | None = None
) -> list[GradStats]:
    """Back-propagate ``loss`` and measure every Linear/Conv weight, in module order.

    With ``optimizer`` (built over the model's parameters, at the learning rate to judge), one
    step is taken and undone to measure the actual update/weight ratio. Gradients are cleared
    afterwards; the model and the optimiser are left as they were.
    """
    weights = [(f"{n}.weight" if n else "weight", m.weight) for n, m in model.named_modules()
               if isinstance(m, WEIGHTED)]  # fmt: skip
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = [float(w.grad.norm()) if w.grad is not None else 0.0 for _, w in weights]
    norms = [float(w.detach().norm()) for _, w in weights]
    ratios: list[float | None] = [None] * len(weights)
    if optimizer is not None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        before = [p.detach().clone() for p in params]
        state = copy.deepcopy(optimizer.state_dict())
        weight_before = [w.detach().clone() for _, w in weights]
        optimizer.step()
        ratios = [
            float((w.detach() - b).norm()) / n if n > 0 else math.inf
            for (_, w), b, n in zip(weights, weight_before, norms, strict=True)
        ]
        with torch.no_grad():
            for p, b in zip(params, before, strict=True):
                p.copy_(b)
        optimizer.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    return [
        GradStats(name, g, n, r)
        for (name, _), g, n, r in zip(weights, grads, norms, ratios, strict=True)
    ]


def check_gradients(stats: list[GradStats]) -> Finding:
    """Vanishing or exploding gradients, and update/weight ratios far from 1e-3.

    Each earlier layer's |grad|/|w| against the last layer's: below 1e-3 warns, below 1e-5
    fails (above 1e3 / 1e5 likewise). Update/weight: a median outside [1e-5, 1e-1] warns, any
    layer above 1 fails.
    """
    if not stats:
        return Finding("gradients", "ok", "no Linear/Conv weights to measure")
    values: dict = {"layers": [s.to_json() for s in stats]}
    if not all(math.isfinite(s.grad_norm) for s in stats):
        bad = next(s.name for s in stats if not math.isfinite(s.grad_norm))
        return Finding(
            "gradients",
            "fail",
            f"non-finite gradient in {bad}",
            "gradients overflow: lower the learning rate, check the init and the inputs",
            values,
        )
    status, parts, advice = "ok", [], []
    # a weight that is exactly zero (a zero-initialised branch) has no |grad|/|w|: leave it out
    stats = [s for s in stats if s.weight_norm > 0] or stats
    last = stats[-1]
    if len(stats) > 1 and math.isfinite(last.relative_grad) and last.relative_grad > 0:
        slow = min(stats[:-1], key=lambda s: s.relative_grad)
        fast = max(stats[:-1], key=lambda s: s.relative_grad)
        flow, burst = (
            slow.relative_grad / last.relative_grad,
            fast.relative_grad / last.relative_grad,
        )
        values |= {"flow_ratio": flow, "slowest": slow.name, "burst_ratio": burst}
        parts.append(
            f"|grad|/|w| slowest layer {slow.relative_grad:.2g} ({slow.name}), "
            f"last {last.relative_grad:.2g} (ratio {flow:.2g})"
        )
        if flow < VANISH_WARN:
            status = "fail" if flow < VANISH_FAIL else "warn"
            slower = f"{1 / flow:.0f}x slower than the last layer" if flow > 0 else "nothing"
            advice.append(
                f"gradients vanish on their way back to {slow.name}: it learns {slower} "
                "(saturating or dead units, or a bad init); use ReLU-family units with Kaiming "
                "init, or add batch norm"
            )
        elif burst > 1.0 / VANISH_WARN:
            status = "fail" if burst > 1.0 / VANISH_FAIL else "warn"
            advice.append(
                f"gradients explode towards {fast.name}: the init is too large; use the init "
                "that fits the activation (Kaiming for ReLU, Xavier for tanh) or batch norm"
            )
    ratios = [s.update_ratio for s in stats if s.update_ratio is not None]
    if ratios:
        median = sorted(ratios)[len(ratios) // 2]
        top = max(stats, key=lambda s: -1.0 if s.update_ratio is None else s.update_ratio)
        values |= {"median_update_ratio": median, "max_update_ratio": top.update_ratio}
        parts.append(f"update/weight median {median:.2g}, max {top.update_ratio:.2g} ({top.name})")
        if not math.isfinite(top.update_ratio) or top.update_ratio > UPDATE_FAIL:
            status = "fail"
            advice.append(
                f"one step changes {top.name} by more than its own size: the learning rate is "
                "far too high (aim for ~1e-3)"
            )
        elif median > UPDATE_HIGH:
            status = "fail" if status == "fail" else "warn"
            advice.append("updates are large (aim for ~1e-3): lower the learning rate")
        elif median < UPDATE_LOW:
            status = "fail" if status == "fail" else "warn"
            advice.append("updates are tiny (aim for ~1e-3): raise the learning rate")
    return Finding("gradients", status, "; ".join(parts), "; ".join(advice), values)
