"""Check 1 of the doctor: the loss at initialisation against its expected value (lecture 002,
"Step 1: check initial loss ... e.g. log(C) for softmax with C classes").

A freshly initialised classifier should know nothing: its scores are small, its predicted
distribution close to uniform, and its softmax cross-entropy close to ln C whatever the labels
(for a uniform prediction the cross-entropy is ln C for every target distribution). Binary
cross-entropy on logits near 0 gives ln 2 per output. A loss well above that means the network
starts over-confident: scores too large (an init too big for the last layer) or a constant offset
per class (a last-layer bias); the measurement splits the two.

How the model is run: batch norm in train mode (what the first training step sees), dropout and
the other stochastic layers off, no weight penalty and no label smoothing ("with regularisation
off", as the lecture says). Dropout in train mode would not move the expected scores but would add
noise to them and so raise the loss; the question here is the init, not the dropout rate. Running
statistics are restored afterwards, so the check leaves no trace on the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context, training_batches
from trainlab.diagnosis.findings import Finding
from trainlab.nn.init import WEIGHTED, _measuring  # the same "as training sees it" mode as LSUV
from trainlab.nn.losses import LOSSES

__all__ = ["check_initial_loss", "expected_initial_loss", "WARN_RATIO", "FAIL_RATIO"]

# Thresholds on the ratio measured / expected. For C classes and scores of std s independent of
# the label, E[loss] ~ ln C + s^2 / 2. The healthy default convnet (Kaiming on its last layer,
# whose input, pooled ReLU features, is not centred) measures about 1.45 x ln 10: a per-class
# offset of the scores that the first steps remove at once. Twice ln C (s ~ 2 on 10 classes) is
# an init that dominates what the model must learn first: warn. Three times is a network that
# starts confidently wrong (a 10 x bias measures 7-8 x): fail. Below expected by more than a
# quarter is suspicious too: an untrained model cannot beat chance on balanced labels (a leak,
# or the bias was set to the class priors of imbalanced data, which is fine and said so).
WARN_RATIO = 2.0
FAIL_RATIO = 3.0
LOW_RATIO = 0.75
CHECKED = ("cross_entropy", "kl", "bce")


def expected_initial_loss(loss_name: str, num_classes: int) -> float | None:
    """ln C for softmax cross-entropy (and KL to hard targets), ln 2 for binary cross-entropy
    (one logit, or one-vs-all per class); None for losses this check does not judge."""
    if loss_name in ("cross_entropy", "kl"):
        return math.log(num_classes)
    if loss_name == "bce":
        return math.log(2.0)
    return None


@torch.no_grad()
def _measure(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], loss_name: str
) -> tuple[list[float], float, float, float, int]:
    loss_fn = LOSSES.build(loss_name)  # the registry defaults: no label smoothing
    losses, offsets, spreads, zero_losses, seen = [], [], [], [], 0
    with _measuring(model):
        for x, y in batches:
            scores = model(x).float()
            losses.append(float(loss_fn(scores, y)))
            zero_losses.append(float(loss_fn(torch.zeros_like(scores), y)))
            # a constant per-class offset (the same for every example: a bias) against the
            # example-to-example spread of the scores
            offsets.append(float(scores.mean(0).std()) if scores.shape[1] > 1 else 0.0)
            spreads.append(float(scores.std(0).mean()) if scores.shape[0] > 1 else 0.0)
            seen += x.shape[0]
    n = len(losses)
    return losses, sum(offsets) / n, sum(spreads) / n, sum(zero_losses) / n, seen


def _last_bias_std(model: nn.Module) -> float:
    """Std of the bias of the model's last Linear/Conv (module order), 0 when it has none."""
    last = [m for m in model.modules() if isinstance(m, WEIGHTED)]
    if not last or last[-1].bias is None or last[-1].bias.numel() < 2:
        return 0.0
    return float(last[-1].bias.detach().float().std())


def check_initial_loss(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_name: str,
    num_classes: int,
) -> Finding:
    """The mean loss at initialisation over ``batches`` (preprocessed ``(x, y)``, a few suffice)
    against its expected value: ok, or warn/fail when it is more than 2x/3x above it
    (warn when below 0.75x: chance cannot be beaten before training).

    ``values``: measured, expected, ratio (measured / expected), per-batch losses, the scores'
    per-class offset (std over classes of the batch-mean score) and spread (mean over classes of
    the std over examples), examples seen. Losses other than cross-entropy, KL and BCE are
    reported against the loss of all-zero scores but not judged.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("check_initial_loss needs at least one batch")
    losses, offset, spread, zero_loss, seen = _measure(model, batches, loss_name)
    measured = sum(losses) / len(losses)
    expected = expected_initial_loss(loss_name, num_classes)
    values = {
        "loss": loss_name,
        "measured": measured,
        "expected": expected,
        "ratio": None if expected is None else measured / expected,
        "batch_losses": losses,
        "score_offset": offset,
        "score_spread": spread,
        "examples": seen,
    }
    if expected is None:
        values["zero_score_loss"] = zero_loss
        return Finding(
            "initial_loss",
            "ok",
            f"{loss_name} at init {measured:.4g} (all-zero scores give {zero_loss:.4g}); "
            f"not judged: only cross-entropy, KL and BCE have a known value at init",
            values=values,
        )
    what = "ln 2" if loss_name == "bce" else f"ln {num_classes}"
    summary = (
        f"{loss_name} at init {measured:.4g} vs expected {what} = {expected:.4g} "
        f"(ratio {measured / expected:.2f}; scores: per-class offset {offset:.3g}, "
        f"spread {spread:.3g})"
    )
    if not math.isfinite(measured):
        return Finding(
            "initial_loss",
            "fail",
            summary,
            "the loss is not finite before any training: look for NaN/inf inputs or weights",
            values,
        )
    ratio = measured / expected
    if ratio > WARN_RATIO:
        status = "fail" if ratio > FAIL_RATIO else "warn"
        bias = _last_bias_std(model)
        values["last_bias_std"] = bias
        if offset > spread and bias >= 0.5 * offset:
            cause = (
                f"the scores carry a constant per-class offset ({offset:.3g}) from the last "
                f"layer's bias (std {bias:.3g}); start it at zero (model.init zeroes biases)"
            )
        else:
            cause = (
                "the scores are too large: the last layer's init is too big for its input; "
                "scale it down (a smaller-std init, or zero-init the last layer)"
            )
        return Finding("initial_loss", status, summary, f"over-confident at init: {cause}", values)
    if ratio < LOW_RATIO:
        return Finding(
            "initial_loss",
            "warn",
            summary,
            "below chance before training: the model may see the labels (a leak), or the "
            "last-layer bias is set to the class priors (fine on imbalanced data)",
            values,
        )
    return Finding("initial_loss", "ok", summary, values=values)


@CHECK_REGISTRY.register("initial_loss")
def _check(ctx: Context) -> Finding:
    """The loss at initialisation against -ln(1/C) (lecture 002's first sanity check)."""
    import copy

    parts = ctx.parts
    model = copy.deepcopy(parts.model)
    return check_initial_loss(
        model, training_batches(parts, 5), ctx.recipe.loss.name, parts.num_classes
    )
