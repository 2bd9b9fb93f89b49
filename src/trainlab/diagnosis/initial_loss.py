"""Check 1 of the doctor: the loss at initialisation against its expected value (lecture 002,
"Step 1: check initial loss ... e.g. log(C) for softmax with C classes").

A freshly initialised classifier should know nothing: its scores are small, its predicted
distribution close to uniform, and its softmax cross-entropy close to ln C whatever the labels
(for a uniform prediction the cross-entropy is ln C for every target distribution). Binary
cross-entropy on logits near 0 gives ln 2 per output. A loss well above that means the network
starts over-confident: scores too large (an init too big for the last layer) or a constant offset
per class (a last-layer bias); the measurement splits the two (cause ``init.last_layer``).

Soft targets (mixup, cutmix) change nothing for cross-entropy and BCE: a uniform prediction
scores ln C (ln 2) against any target distribution. KL to a soft target t is cross-entropy minus
H(t), so its expected value is ln C - H(t): the loss of all-zero scores, measured on the batch.

A model that already outputs probabilities (a softmax or sigmoid at its end) before a loss that
applies one itself fails with cause ``model.output``: softmax scores near 1/C give a loss near
ln C, so the ratio alone would pass it, but the loss is then bounded and its gradients tiny.
Seen from the scores (every row non-negative and summing to 1) or from the module that produced
them (a Softmax/Sigmoid, found with forward hooks) with every score in [0, 1]; a sigmoid applied
in a user's ``forward`` as a function, on one output, cannot be told from logits that happen to
lie in [0, 1] and is not flagged. LogSoftmax before cross-entropy is harmless (log-softmax is
idempotent) and is not flagged either.

How the model is run: batch norm in train mode (what the first training step sees), dropout and
the other stochastic layers off, no weight penalty and no label smoothing ("with regularisation
off", as the lecture says). Dropout in train mode would not move the expected scores but would add
noise to them and so raise the loss; the question here is the init, not the dropout rate. Running
statistics are restored afterwards, so the check leaves no trace on the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

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
# rows of softmax outputs sum to 1 up to float32 rounding (~1e-7 per term); logits never do
ROW_SUM_TOL = 1e-3
PROBABILITY_MODULES = (nn.Softmax, nn.Sigmoid, nn.Softmin, nn.Hardsigmoid)
# inits that reset every bias to zero: all but the constructor's own weights
KEEPS_BIASES = ("keep", "default")


def expected_initial_loss(loss_name: str, num_classes: int) -> float | None:
    """ln C for softmax cross-entropy (and KL to hard targets), ln 2 for binary cross-entropy
    (one logit, or one-vs-all per class); None for losses this check does not judge."""
    if loss_name in ("cross_entropy", "kl"):
        return math.log(num_classes)
    if loss_name == "bce":
        return math.log(2.0)
    return None


@dataclass
class _Measured:
    """What :func:`_measure` saw over the batches (means over batches where averaged)."""

    losses: list[float]
    offset: float
    spread: float
    zero_loss: float
    seen: int
    soft: bool  # some targets were class probabilities (mixup, cutmix)
    low: float  # smallest score
    high: float  # largest score
    row_sum_error: float  # max |sum of a row - 1|
    producer: str  # type of the module whose output was the model's output ("" when none)
    outputs: int  # scores per example


def _producer_hooks(model: nn.Module, calls: list[tuple[nn.Module, object]]) -> list:
    """Forward hooks recording (module, output) in the order calls finish (innermost first)."""

    def record(module: nn.Module, args: tuple, output: object) -> None:
        calls.append((module, output))

    return [m.register_forward_hook(record) for m in model.modules() if m is not model]


@torch.no_grad()
def _measure(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], loss_name: str
) -> _Measured:
    loss_fn = LOSSES.build(loss_name)  # the registry defaults: no label smoothing
    losses, offsets, spreads, zero_losses, seen = [], [], [], [], 0
    low, high, row_error, producer, soft = math.inf, -math.inf, 0.0, "", False
    calls: list[tuple[nn.Module, object]] = []
    handles = _producer_hooks(model, calls)
    try:
        with _measuring(model):
            for i, (x, y) in enumerate(batches):
                calls.clear()
                out = model(x)
                if i == 0:  # the innermost module that returned the very output tensor
                    producer = next((type(m).__name__ for m, o in calls if o is out), "")
                scores = out.float()
                soft = soft or y.is_floating_point()
                losses.append(float(loss_fn(scores, y)))
                zero_losses.append(float(loss_fn(torch.zeros_like(scores), y)))
                # a constant per-class offset (the same for every example: a bias) against the
                # example-to-example spread of the scores
                offsets.append(float(scores.mean(0).std()) if scores.shape[1] > 1 else 0.0)
                spreads.append(float(scores.std(0).mean()) if scores.shape[0] > 1 else 0.0)
                low, high = min(low, float(scores.min())), max(high, float(scores.max()))
                row_error = max(row_error, float((scores.sum(1) - 1).abs().max()))
                seen += x.shape[0]
    finally:
        for h in handles:
            h.remove()
    n = len(losses)
    return _Measured(
        losses, sum(offsets) / n, sum(spreads) / n, sum(zero_losses) / n, seen, soft,
        low, high, row_error, producer, int(scores.shape[1]),
    )  # fmt: skip


def _outputs_probabilities(m: _Measured) -> str:
    """Why the scores look like probabilities rather than logits ("" when they do not)."""
    if m.outputs > 1 and m.low >= 0 and m.row_sum_error < ROW_SUM_TOL:
        where = f", last module {m.producer}" if m.producer else ""
        return f"every row is non-negative and sums to 1{where}"
    probability_module = m.producer in {c.__name__ for c in PROBABILITY_MODULES}
    if probability_module and m.low >= 0 and m.high <= 1:
        return f"every score is in [0, 1], made by a {m.producer} at the end of the model"
    return ""


def _last_bias_std(model: nn.Module) -> float:
    """Std of the bias of the model's last Linear/Conv (module order), 0 when it has none."""
    last = [m for m in model.modules() if isinstance(m, WEIGHTED)]
    if not last or last[-1].bias is None or last[-1].bias.numel() < 2:
        return 0.0
    return float(last[-1].bias.detach().float().std())


def _last_layer_cause(
    m: _Measured, model: nn.Module, init_name: str | None
) -> tuple[str, tuple[str, ...], float]:
    """Advice, fix and the last bias's std for an initial loss far above expected: a
    per-class offset carried by the last layer's bias, or scores too large overall."""
    bias = _last_bias_std(model)
    if m.offset > m.spread and bias >= 0.5 * m.offset:
        if init_name in KEEPS_BIASES:
            fix: tuple[str, ...] = ("model.init=kaiming_normal",)
            how = (
                f"start it at zero (model.init={init_name} keeps the constructor's biases; "
                "every other model.init zeroes them, e.g. model.init=kaiming_normal)"
            )
        else:
            fix = ()
            how = "start it at zero in the model's constructor (or leave it to model.init)"
        return (
            f"the scores carry a constant per-class offset ({m.offset:.3g}) from the last "
            f"layer's bias (std {bias:.3g}); {how}",
            fix,
            bias,
        )
    return (
        "the scores are too large: the last layer's init is too big for its input; scale it "
        "down (multiply the last layer's weights by 0.1, or zero them, in the model's "
        "constructor: no recipe key sets the last layer alone)",
        (),
        bias,
    )


def _whole_init_cause(model: nn.Module, init_name: str | None) -> tuple[str, tuple[str, ...]]:
    """When the scores are too large and the recipe's init does not fit the model's
    activations (``normal`` with std 1 before sigmoids), the whole init is to blame, not the
    last layer: (advice, fix) naming the fitting init; ("", ()) when the init fits."""
    from trainlab.diagnosis.activations import ACTIVATION_MODULES, Setting, fitting_init

    kinds = [type(m).__name__ for m in model.modules() if isinstance(m, ACTIVATION_MODULES)]
    setting = Setting(init=init_name)
    if init_name is None or setting.fits(kinds):
        return "", ()
    init, rule = fitting_init(kinds)
    return (
        f"the scores are too large because the init ({init_name}) is too large for the "
        f"activation: {rule}",
        setting.override("model.init", init),
    )


def check_initial_loss(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_name: str,
    num_classes: int,
    *,
    init_name: str | None = None,
) -> Finding:
    """The mean loss at initialisation over ``batches`` (preprocessed ``(x, y)``, a few suffice;
    ``y`` class indices or, mixed, class probabilities) against its expected value: ok, or
    warn/fail when it is more than 2x/3x above it (warn when below 0.75x: chance cannot be
    beaten before training); fail when the model outputs probabilities before a loss that
    expects logits. ``init_name`` (the recipe's ``model.init``) decides whether a bias offset
    has a recipe fix.

    ``values``: measured, expected, ratio (measured / expected), per-batch losses, the scores'
    per-class offset (std over classes of the batch-mean score) and spread (mean over classes of
    the std over examples), examples seen, the scores' range and the module that made them.
    Losses other than cross-entropy, KL and BCE are reported against the loss of all-zero scores
    but not judged.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("check_initial_loss needs at least one batch")
    m = _measure(model, batches, loss_name)
    measured = sum(m.losses) / len(m.losses)
    expected = expected_initial_loss(loss_name, num_classes)
    if expected is not None and loss_name == "kl" and m.soft:
        expected = m.zero_loss  # ln C - H(t) for soft targets t
    values = {
        "loss": loss_name,
        "measured": measured,
        "expected": expected,
        "ratio": None if expected is None else measured / expected,
        "batch_losses": m.losses,
        "score_offset": m.offset,
        "score_spread": m.spread,
        "score_range": [m.low, m.high],
        "output_module": m.producer,
        "soft_targets": m.soft,
        "examples": m.seen,
    }
    if expected is None:
        values["zero_score_loss"] = m.zero_loss
        return Finding(
            "initial_loss",
            "ok",
            f"{loss_name} at init {measured:.4g} (all-zero scores give {m.zero_loss:.4g}); "
            f"not judged: only cross-entropy, KL and BCE have a known value at init",
            values=values,
        )
    if loss_name == "bce":
        what = "ln 2"
    elif loss_name == "kl" and m.soft:
        what = f"ln {num_classes} - H(targets)"
    else:
        what = f"ln {num_classes}"
    summary = (
        f"{loss_name} at init {measured:.4g} vs expected {what} = {expected:.4g} "
        f"(ratio {measured / expected:.2f}; scores: per-class offset {m.offset:.3g}, "
        f"spread {m.spread:.3g})"
    )
    if not math.isfinite(measured):
        return Finding(
            "initial_loss",
            "fail",
            summary,
            "the loss is not finite before any training: look for NaN/inf inputs or weights",
            values,
        )
    why = _outputs_probabilities(m)
    values["probabilities"] = bool(why)
    if why:
        applies = "a sigmoid" if loss_name == "bce" else "log-softmax"
        return Finding(
            "initial_loss",
            "fail",
            f"the model outputs probabilities, not logits ({why}): {summary}",
            f"remove the final {m.producer or 'softmax/sigmoid'}: {loss_name} applies {applies} "
            "itself, and on probabilities the loss is bounded and its gradients tiny",
            values,
            cause="model.output",
        )
    ratio = measured / expected
    if ratio > WARN_RATIO:
        status = "fail" if ratio > FAIL_RATIO else "warn"
        advice, fix, bias = _last_layer_cause(m, model, init_name)
        values["last_bias_std"] = bias
        cause = "init.last_layer"
        if not fix:  # not a bias offset with a recipe fix: is it the init as a whole?
            whole, whole_fix = _whole_init_cause(model, init_name)
            if whole:
                advice, fix, cause = whole, whole_fix, "init.scale"
        return Finding(
            "initial_loss",
            status,
            summary,
            f"over-confident at init: {advice}",
            values,
            cause=cause,
            fix=fix,
        )
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
        model,
        training_batches(parts, 5),
        parts.recipe.loss.name,
        parts.num_classes,
        init_name=parts.recipe.model.init.name,
    )
