"""Check 6, the curves: read ``metrics.jsonl`` (and ``summary.json``) and say what the loss and
accuracy curves show.

Lecture 002, step 6 ("Look at learning curves!"): losses are noisy, so the loss is plotted raw
(a scatter) and with a moving average; the verdicts follow the lecture's list ("loss not going
down? lr too low, bad initialisation; loss explodes to Inf or NaN? lr too high") and lecture 004's
over/underfitting. Training records (``loss``, ``acc``, ``lr`` at a ``step``) are averages over a
logging window of ``training.log_every`` steps, measured on the batches training sees: mixed by
mixup/cutmix and scored against label-smoothed targets. Validation records carry ``val_loss`` and
``val_acc`` once per evaluation, on clean inputs with the plain loss.

The regularisers are accounted for (:func:`loss_floor`): with label smoothing or mixing the
training loss cannot reach 0, so every fall of the training loss is measured against the distance
from its start to that floor, not to zero; under mixup/cutmix the training accuracy (against the
mixed batch's dominant label) is not judged at all; over/underfitting are read on the clean
validation (or, after the run, test) accuracy.

Verdicts, checked in this order (1, 2 and 4 make the others meaningless, so they end it):

1. **exploding** (fail, ``lr.high``): a non-finite training loss, or the smoothed loss ending
   above ``EXPLODE_END`` x its start or peaking above ``EXPLODE_PEAK`` x its start. A loss that
   rises that far is not noise: a window average of 20 batches does not move 50% up by chance.
2. **not going down** (fail, ``lr.low``): the smoothed loss never falls ``MIN_FALL`` (10%) of
   its distance to the floor below its start. Any learning rate that trains at all does that.
3. **validation split too small** (warn, no cause): ``validation_too_small`` of the data check
   (fewer than 30 examples, or than 5 per class); then no verdict is read from validation.
4. **labels misaligned** (fail, ``data.labels``): validation accuracy never leaves chance (the
   larger of 1/C and the majority class's share) by more than ``CHANCE_MARGIN`` or three binomial
   standard errors, while training accuracy ends ``LABELS_TRAIN_ABOVE`` above chance, having
   risen ``LABELS_TRAIN_RISE``: the network memorises labels that nothing in the inputs predicts.
5. **plateau at the start** (warn, ``init.scale``): the smoothed loss needs at least
   ``PLATEAU_SPAN`` (15%) of the run to take its first ``PLATEAU_FALL`` (10%) off, that flat
   stretch holds at least ``PLATEAU_POINTS`` logged records (so it is measured, not an artefact of
   coarse logging), and the loss then takes at least ``PLATEAU_THEN`` (30%) off overall: the
   lecture's bad-init shape. A healthy curve falls fastest at the start.
6. **overfitting** (warn, ``regularization``): with at least ``MIN_EVALS`` evaluations, the
   validation loss ends ``OVERFIT_VAL_RISE`` (10%) above its minimum while the training loss kept
   falling, or the train-minus-val accuracy gap ends above ``OVERFIT_ACC_GAP`` (0.10) having grown
   by ``OVERFIT_GAP_GROWTH`` (0.05) since the first evaluation; after the run, the same for the
   train-minus-test gap (summary.json's ``test_acc``).
7. **underfitting** (warn, ``capacity``): train AND clean both poor. Train: the loss ends above
   ``UNDERFIT_LOSS`` (half) of its distance to the floor, or (without mixing) the training
   accuracy ends below ``UNDERFIT_ACC`` (0.80); clean: the last validation accuracy (else the
   test accuracy) below ``UNDERFIT_ACC``. Validation at 99% is never underfitting.

Otherwise one ``ok`` finding. The measured numbers are in each finding's ``values``; the fixes
(recipe overrides) are computed from the recipe and never repeat a value it already has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context
from trainlab.diagnosis.data import validation_too_small
from trainlab.diagnosis.findings import Finding, Status
from trainlab.diagnosis.remedies import lr_fix, wider_model
from trainlab.errors import TrainlabError
from trainlab.figures import new_figure, save_figure

if TYPE_CHECKING:
    from trainlab.recipe import Recipe

__all__ = [
    "check_curves",
    "load_records",
    "load_summary",
    "loss_floor",
    "plot_curves",
    "smooth",
    "split_records",
]

EXPLODE_END = 1.5
EXPLODE_PEAK = 3.0
MIN_FALL = 0.10
PLATEAU_FALL = 0.10
PLATEAU_SPAN = 0.15
PLATEAU_POINTS = 3
PLATEAU_THEN = 0.30
MIN_EVALS = 3
OVERFIT_VAL_RISE = 0.10
OVERFIT_ACC_GAP = 0.10
OVERFIT_GAP_GROWTH = 0.05
UNDERFIT_ACC = 0.80
UNDERFIT_LOSS = 0.5
# Validation "at chance": within 5 points of it, or 3 binomial standard errors
# sqrt(p(1-p)/n) when the split size is known (digits, 144 examples at p=0.1: 0.075).
CHANCE_MARGIN = 0.05
# Training accuracy that memorised labels: random labels on digits/MNIST-1D reach train
# accuracy far above chance within a run (the overfit check's label probe); a genuinely poor
# model stays near chance on both, so these do not fire on a model that learns nothing.
LABELS_TRAIN_ABOVE = 0.25
LABELS_TRAIN_RISE = 0.10
# Monte-Carlo draws of lambda for the mixup/cutmix floor: each draw's target entropy lies in
# [0, ln C], so the mean's standard error is under 0.01 ln C / sqrt(1e5/1e4), about 1e-3.
FLOOR_DRAWS = 100_000
MIXERS = ("mixup", "cutmix")
# The lecture's step for a learning rate that is off: try 10x either way.
LR_FACTOR = 10.0
# A stronger weight decay: 5x the recipe's (half a decade), or 0.05 from none (the MNIST-1D
# recipe's AdamW value); early stopping with EarlyStoppingConfig's default patience.
DECAY_FACTOR = 5.0
DECAY_START = 0.05
EARLY_PATIENCE = 5
# Too few records (under 2) are fixed by logging about this many: the smoothing window is a
# tenth of the records, so 20 give a window of 3.
MIN_RECORDS = 20
# The init that keeps each activation's variance (lecture 000): He for the ReLU family, Glorot
# for tanh/sigmoid, LeCun for SELU; anything else is ReLU-like.
FITTING_INIT = {"tanh": "xavier_normal", "sigmoid": "xavier_normal", "selu": "lecun_normal"}

CHECK = "curves"


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (one JSON object a line; blank lines skipped)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise TrainlabError(f"{path}: cannot read the metrics log ({e.strerror})") from None
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)  # json reads NaN and Infinity, as json.dumps writes them
        except json.JSONDecodeError as e:
            raise TrainlabError(f"{path}:{i}: not a JSON record ({e.msg})") from None
        if not isinstance(record, dict):
            raise TrainlabError(f"{path}:{i}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def split_records(
    records: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training records, validation records), each in step order."""
    train = [r for r in records if "loss" in r and "step" in r]
    val = [r for r in records if "val_loss" in r and "step" in r]
    return sorted(train, key=lambda r: r["step"]), sorted(val, key=lambda r: r["step"])


def smooth(values: np.ndarray, window: int | None = None) -> np.ndarray:
    """Centred moving average (the window shrinks at the ends, so nothing lags or is lost).

    The default window is about a tenth of the points (odd, 1 to 51): enough to see the trend
    through batch noise, short enough to keep a plateau's edge where it is.
    """
    n = len(values)
    if n == 0:
        return values.astype(float)
    if window is None:
        window = min(51, max(1, (n // 10) | 1))
    half = window // 2
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=float)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (csum[hi] - csum[lo]) / (hi - lo)


def _f(x: float) -> float:
    return round(float(x), 6)


def _g(x: float) -> str:
    """A recipe value as an override writes it: 3 significant digits (0.0003, 0.25, 2)."""
    return f"{x:.3g}"


# ----------------------------------------------------------------------------------------------
# what the recipe makes of the training loss: its floor


def _mixers(recipe: Recipe) -> list[tuple[str, float, float]]:
    """(name, alpha, p) of each mixing augmentation of the recipe, in its order."""
    found = []
    for spec in recipe.augment:
        if spec.name in MIXERS:
            params = spec.params()
            found.append((spec.name, float(params.get("alpha", 1.0)), float(params.get("p", 1.0))))
    return found


def _recipe_classes(recipe: Recipe) -> int | None:
    """C as the recipe states it (data.num_classes or data.classes), None when the data says."""
    if recipe.data.num_classes is not None:
        return recipe.data.num_classes
    return len(recipe.data.classes) if recipe.data.classes else None


def _target_loss(t: np.ndarray, loss: str) -> np.ndarray:
    """Each target probability's share of the loss's minimum: the minimum over predictions of
    cross-entropy -sum t log p is the entropy -sum t log t (at p = t); of bce, the mean over the
    C outputs of the binary entropy of each t_k."""
    t = np.clip(t, 1e-12, 1.0)
    if loss == "bce":
        u = np.clip(1.0 - t, 1e-12, 1.0)
        return -(t * np.log(t) + u * np.log(u))
    return -t * np.log(t)


def loss_floor(
    recipe: Recipe, num_classes: int | None = None, class_shares: Sequence[float] | None = None
) -> float:
    """The lowest training loss the recipe's targets allow: above zero with label smoothing
    and with mixup/cutmix, whose targets are not one-hot.

    A logged training loss is measured on the targets training uses. With smoothing eps over C
    classes the target is (1 - eps) y + eps / C and the least cross-entropy is its entropy
    (eps 0.05, C 10: 0.282). A mixed sample's target is lambda e(a) + (1 - lambda) e(b), smoothed
    the same way; its entropy is averaged numerically over lambda ~ Beta(alpha, alpha) and over
    the chance 1 - sum_k share_k^2 that the partner's label differs (a sample is mixed with
    probability p; one mixer per batch, chosen uniformly). CutMix's label weight is the area it
    really keeps, a little nearer 1 than lambda when the box is clipped: its floor here is a
    slight over-estimate. Losses other than cross-entropy and bce (hinge, kl) get 0. With C
    unknown the floor is computed for C = 2, its smallest value.
    """
    loss = recipe.loss.name
    if loss not in ("cross_entropy", "bce"):
        return 0.0
    eps = float(recipe.loss.params().get("label_smoothing") or 0.0)
    mixers = _mixers(recipe)
    if eps == 0 and not mixers:
        return 0.0
    c = num_classes or (len(class_shares) if class_shares else None) or _recipe_classes(recipe)
    c = max(2, c or 2)
    scale = 1.0 / c if loss == "bce" else 1.0  # bce averages over the C outputs
    rest = _target_loss(np.array(eps / c), loss)
    same = scale * float(_target_loss(np.array(1 - eps + eps / c), loss) + (c - 1) * rest)
    if not mixers:
        return same
    shares = np.asarray(class_shares, dtype=float) if class_shares else np.full(c, 1.0 / c)
    differ = 1.0 - float(np.sum((shares / shares.sum()) ** 2))
    rng = np.random.default_rng(0)  # a fixed draw: the same recipe always gets the same floor
    floors = []
    for _, alpha, p in mixers:
        lam = rng.beta(alpha, alpha, FLOOR_DRAWS)
        mixed = (
            _target_loss((1 - eps) * lam + eps / c, loss)
            + _target_loss((1 - eps) * (1 - lam) + eps / c, loss)
            + (c - 2) * rest
        )
        floors.append((1 - p * differ) * same + p * differ * scale * float(mixed.mean()))
    return float(np.mean(floors))


# ----------------------------------------------------------------------------------------------
# fixes computed from the recipe (never a value the recipe already has)


def _init_fix(recipe: Recipe | None) -> tuple[str, ...]:
    """The init that fits the activation (Kaiming for ReLUs, Glorot for tanh/sigmoid, LeCun for
    SELU), when the recipe uses another one on one of trainlab's own models."""
    if recipe is None or ":" in recipe.model.name or recipe.model.name.startswith("tv."):
        return ()
    fitting = FITTING_INIT.get(recipe.model.activation.name, "kaiming_normal")
    return () if recipe.model.init.name == fitting else (f"model.init={fitting}",)


def _regularise_fix(recipe: Recipe | None, has_val: bool) -> tuple[str, ...]:
    """Stronger weight decay than the recipe's (its L2 when it uses L2 instead), and early
    stopping when the recipe has none and a validation split to stop on."""
    if recipe is None:
        return ()
    wd, l2 = recipe.optimizer.weight_decay, recipe.regularization.l2
    if l2 > 0 and wd == 0:
        fix = [f"regularization.l2={_g(l2 * DECAY_FACTOR)}"]
    else:
        fix = [f"optimizer.weight_decay={_g(wd * DECAY_FACTOR if wd > 0 else DECAY_START)}"]
    if recipe.training.early_stopping is None and has_val:
        fix.append(f"training.early_stopping.patience={EARLY_PATIENCE}")
    return tuple(fix)


def _capacity_fix(recipe: Recipe | None) -> tuple[str, ...]:
    """A model twice as wide (trainlab's own models), else twice the training."""
    if recipe is None:
        return ()
    return wider_model(recipe) or _longer_fix(recipe)


def _longer_fix(recipe: Recipe) -> tuple[str, ...]:
    training = recipe.training
    if training.max_steps is not None:
        return (f"training.max_steps={2 * training.max_steps}",)
    return (f"training.epochs={2 * training.epochs}",)


def _val_fraction_fix(recipe: Recipe | None, n: int, need: int) -> tuple[str, ...]:
    """A ``data.val_fraction`` that gives about ``need`` validation examples (rounded up to
    0.05, at most 0.5), when it is larger than the recipe's."""
    if recipe is None or n <= 0:
        return ()
    current = recipe.data.val_fraction
    wanted = min(0.5, math.ceil(current * need / n * 20) / 20)
    return (f"data.val_fraction={_g(wanted)}",) if wanted > current else ()


# ----------------------------------------------------------------------------------------------
# the curves, and the verdicts read from them


@dataclass
class _Curves:
    """The measured series: smoothed training loss/accuracy and the validation evaluations."""

    steps: np.ndarray
    sm: np.ndarray
    floor: float
    acc_sm: np.ndarray | None
    vsteps: list[int]
    val_loss: np.ndarray
    val_acc: np.ndarray | None
    val: list[dict[str, Any]]

    @property
    def start(self) -> float:
        return float(self.sm[0])

    @property
    def end(self) -> float:
        return float(self.sm[-1])

    @property
    def excess(self) -> float:
        """The start's distance to the loss floor: what training can take off."""
        return self.start - self.floor

    def base(self) -> dict[str, Any]:
        values = {
            "start_loss": _f(self.start),
            "end_loss": _f(self.end),
            "min_loss": _f(self.sm.min()),
        }
        if self.floor > 0:
            values["loss_floor"] = _f(self.floor)
        return values

    def train_at(self, step: float, series: np.ndarray) -> float:
        """The smoothed training series at the last record at or before ``step``."""
        i = max(0, int(np.searchsorted(self.steps, step, side="right")) - 1)
        return float(series[i])

    def acc_gaps(self) -> list[float] | None:
        """Train-minus-val accuracy at each evaluation (None without both accuracies)."""
        if self.acc_sm is None or self.val_acc is None:
            return None
        acc = self.acc_sm
        return [
            self.train_at(s, acc) - float(a) for s, a in zip(self.vsteps, self.val_acc, strict=True)
        ]


class _Make:
    """Builds this check's findings, every one with the curves figure."""

    def __init__(self, figure: str | None) -> None:
        self.figures = (figure,) if figure else ()

    def __call__(
        self,
        status: Status,
        summary: str,
        advice: str = "",
        cause: str = "",
        fix: tuple[str, ...] = (),
        **values: Any,
    ) -> Finding:
        return Finding(CHECK, status, summary, advice, values, self.figures, cause, fix)


def _nonfinite(
    train: list[dict[str, Any]], loss: np.ndarray, recipe: Recipe | None, make: _Make
) -> Finding | None:
    bad = np.flatnonzero(~np.isfinite(loss))
    if not bad.size:
        return None
    r = train[bad[0]]
    return make(
        "fail",
        f"loss exploded: {r['loss']} at step {r['step']} (started at {loss[0]:.4g})",
        _lower_lr_advice(recipe),
        "lr.high",
        lr_fix(recipe and recipe.optimizer.lr, 1 / LR_FACTOR),
        first_bad_step=r["step"],
        start_loss=_f(loss[0]),
    )


def _lower_lr_advice(recipe: Recipe | None) -> str:
    """Lower the lr 10x; clipping and a warm-up only when the recipe has none."""
    if recipe is None:
        return (
            "lower the learning rate 10x (optimizer.lr), add gradient clipping "
            "(training.grad_clip) or a warm-up (schedule.warmup_epochs)"
        )
    text = f"lower the learning rate 10x ({lr_fix(recipe.optimizer.lr, 1 / LR_FACTOR)[0]})"
    if recipe.training.grad_clip is None:
        text += ", add gradient clipping (training.grad_clip=1)"
    if recipe.schedule.warmup_epochs == 0 and recipe.schedule.warmup_steps == 0:
        text += ", or a warm-up (schedule.warmup_epochs=1)"
    return text


def _exploding(c: _Curves, recipe: Recipe | None, make: _Make) -> Finding | None:
    start, end, peak = c.start, c.end, float(c.sm.max())
    if not (start > 0 and (end > EXPLODE_END * start or peak > EXPLODE_PEAK * start)):
        return None
    at = int(c.steps[int(np.argmax(c.sm))])
    return make(
        "fail",
        f"loss exploded: smoothed loss went from {start:.4g} to {peak:.4g} (step {at}) and "
        f"ended at {end:.4g}",
        _lower_lr_advice(recipe),
        "lr.high",
        lr_fix(recipe and recipe.optimizer.lr, 1 / LR_FACTOR),
        peak_loss=_f(peak),
        peak_step=at,
        **c.base(),
    )


def _not_falling(c: _Curves, recipe: Recipe | None, make: _Make) -> Finding | None:
    if c.excess <= 1e-3:
        return None
    fall = (c.start - float(c.sm.min())) / c.excess
    if fall >= MIN_FALL:
        return None
    lr = lr_fix(recipe.optimizer.lr, LR_FACTOR)[0] if recipe else "optimizer.lr"
    floor = f" of the {c.excess:.4g} above its floor {c.floor:.4g}" if c.floor > 0 else ""
    return make(
        "fail",
        f"loss is not going down: smoothed loss {c.start:.4g} -> {c.end:.4g} (best fall "
        f"{fall:.1%}{floor}, expected at least {MIN_FALL:.0%})",
        f"raise the learning rate 10x ({lr}) or find it with the lr range test (trainlab "
        "doctor RECIPE --checks lr_range); then check the init (--checks initial_loss,layers)",
        "lr.low",
        lr_fix(recipe and recipe.optimizer.lr, LR_FACTOR),
        fall=_f(fall),
        **c.base(),
    )


def _labels(c: _Curves, chance: float | None, n_val: int | None, make: _Make) -> Finding | None:
    """Validation at chance while training accuracy rises: the labels do not go with the
    inputs (training memorises them; nothing carries over)."""
    if chance is None or c.acc_sm is None or c.val_acc is None or len(c.val_acc) == 0:
        return None
    margin = CHANCE_MARGIN
    if n_val:
        margin = max(margin, 3 * math.sqrt(chance * (1 - chance) / n_val))
    best_val = float(c.val_acc.max())
    train_start, train_end = float(c.acc_sm[0]), float(c.acc_sm[-1])
    if not (
        best_val <= chance + margin
        and train_end >= chance + LABELS_TRAIN_ABOVE
        and train_end - train_start >= LABELS_TRAIN_RISE
    ):
        return None
    return make(
        "fail",
        f"labels do not match the inputs: val accuracy stayed at chance (best {best_val:.3f}, "
        f"chance {chance:.3f}) while train accuracy rose {train_start:.3f} -> {train_end:.3f}",
        "check that labels and inputs are read and shuffled together (data.labels_path, "
        "data.label_column); the overfit check's label probe: trainlab doctor RECIPE --checks "
        "overfit",
        "data.labels",
        best_val_acc=_f(best_val),
        chance=_f(chance),
        chance_margin=_f(margin),
        train_acc_start=_f(train_start),
        train_acc_end=_f(train_end),
        **c.base(),
    )


def _plateau(c: _Curves, recipe: Recipe | None, make: _Make) -> Finding | None:
    if c.excess <= 1e-3:
        return None
    span = c.steps[-1] - c.steps[0]
    below = np.flatnonzero(c.sm <= c.start - PLATEAU_FALL * c.excess)
    first = int(below[0]) if below.size else len(c.sm) - 1
    frac = (c.steps[first] - c.steps[0]) / span if span > 0 else 0.0
    if not (
        frac >= PLATEAU_SPAN
        and first >= PLATEAU_POINTS
        and (c.start - c.end) / c.excess >= PLATEAU_THEN
    ):
        return None
    fix = _init_fix(recipe)
    advice = (
        "bad initialisation: check the initial loss and the layers (trainlab doctor RECIPE "
        "--checks initial_loss,layers)"
    )
    if recipe is not None and fix:
        advice += f"; the init that fits {recipe.model.activation.name} is {fix[0]}"
    elif recipe is None:
        advice += (
            "; Kaiming for ReLU (model.init=kaiming_normal), Glorot for tanh "
            "(model.init=xavier_normal)"
        )
    return make(
        "warn",
        f"loss plateau at the start: flat at {c.start:.4g} for {frac:.0%} of the run (until "
        f"step {int(c.steps[first])}), then fell to {c.end:.4g}",
        advice,
        "init.scale",
        fix,
        plateau_fraction=_f(frac),
        plateau_end_step=int(c.steps[first]),
        **c.base(),
    )


def _overfit(
    c: _Curves, use_val: bool, test_acc: float | None, recipe: Recipe | None, make: _Make
) -> Finding | None:
    """Validation loss rising while training loss falls, or a train-val (or, after the run,
    train-test) accuracy gap that ends wide and grew."""
    text, values, best = None, {}, None
    gaps = c.acc_gaps() if use_val else None
    if use_val and len(c.val) >= MIN_EVALS and np.isfinite(c.val_loss).all():
        b = int(np.argmin(c.val_loss))
        best = c.val[b].get("epoch")
        vmin = float(c.val_loss[b])
        rise = (float(c.val_loss[-1]) - vmin) / vmin if vmin > 0 else 0.0
        train_fell = c.train_at(c.vsteps[-1], c.sm) < c.train_at(c.vsteps[b], c.sm)
        values = {
            "val_loss_min": _f(vmin),
            "val_loss_end": _f(c.val_loss[-1]),
            "val_rise": _f(rise),
            "best_epoch": best,
            "best_step": c.vsteps[b],
        }
        if gaps is not None:
            values.update(acc_gap_first=_f(gaps[0]), acc_gap_end=_f(gaps[-1]))
        if b < len(c.val) - 1 and rise >= OVERFIT_VAL_RISE and train_fell:
            text = (
                f"overfitting: val loss rose {rise:.0%} above its minimum {vmin:.4g} (epoch "
                f"{best}) while the training loss kept falling"
            )
        elif (
            gaps is not None
            and gaps[-1] >= OVERFIT_ACC_GAP
            and gaps[-1] - gaps[0] >= OVERFIT_GAP_GROWTH
        ):
            text = f"overfitting: train-val accuracy gap grew from {gaps[0]:.3f} to {gaps[-1]:.3f}"
    if text is None and test_acc is not None and c.acc_sm is not None:
        gap = float(c.acc_sm[-1]) - test_acc
        first = gaps[0] if gaps else None
        grew = first is None or gap - first >= OVERFIT_GAP_GROWTH
        values.update(test_acc=_f(test_acc), test_gap=_f(gap))
        if gap >= OVERFIT_ACC_GAP and grew:
            since = f" (train-val {first:.3f} at the first evaluation)" if first is not None else ""
            text = (
                f"overfitting: train accuracy {c.acc_sm[-1]:.3f} ends {gap:.3f} above test "
                f"accuracy {test_acc:.3f}{since}"
            )
    if text is None:
        return None
    fix = _regularise_fix(recipe, has_val=use_val)
    return make(
        "warn",
        text,
        _regularise_advice(recipe, fix, best),
        "regularization",
        fix,
        **values,
        **c.base(),
    )


def _regularise_advice(recipe: Recipe | None, fix: tuple[str, ...], best: Any) -> str:
    stop = f"; validation was best at epoch {best}" if best is not None else ""
    if recipe is None:
        return (
            "regularise (optimizer.weight_decay, model.dropout), augment the data, or stop "
            f"earlier (training.early_stopping{stop})"
        )
    parts = [f"regularise: stronger decay ({fix[0]})"]
    if recipe.model.dropout == 0:
        parts.append("dropout (model.dropout=0.2)")
    parts.append("more augmentation (augment)")
    if len(fix) > 1:
        parts.append(f"or stop earlier ({fix[1]}{stop})")
    return ", ".join(parts)


def _underfit(
    c: _Curves,
    clean_acc: float | None,
    clean_name: str,
    mixed: bool,
    recipe: Recipe | None,
    make: _Make,
) -> Finding | None:
    """Train AND clean (validation, else test) accuracy both poor. Training accuracy is not
    judged under mixup/cutmix (it is scored against the mixed batch's dominant label) and the
    training loss is judged above its floor."""
    end_acc = float(c.acc_sm[-1]) if c.acc_sm is not None else None
    ratio = (c.end - c.floor) / c.excess if c.excess > 1e-3 else 0.0
    train_poor = ratio > UNDERFIT_LOSS or (
        not mixed and end_acc is not None and end_acc < UNDERFIT_ACC
    )
    clean_poor = clean_acc is None or clean_acc < UNDERFIT_ACC
    if not (train_poor and clean_poor):
        return None
    acc_text = f"train accuracy {end_acc:.3f}, " if end_acc is not None else ""
    clean_text = f"{clean_name} accuracy {clean_acc:.3f}, " if clean_acc is not None else ""
    floor = f" above its floor {c.floor:.4g}" if c.floor > 0 else ""
    fix = _capacity_fix(recipe)
    return make(
        "warn",
        f"underfitting: train and {clean_name or 'val'} both poor ({acc_text}{clean_text}loss "
        f"{c.start:.4g} -> {c.end:.4g}, {ratio:.0%} of its start{floor})",
        _capacity_advice(recipe, fix, mixed),
        "capacity",
        fix,
        end_acc=None if end_acc is None else _f(end_acc),
        end_clean_acc=None if clean_acc is None else _f(clean_acc),
        loss_left=_f(ratio),
        **c.base(),
    )


def _capacity_advice(recipe: Recipe | None, fix: tuple[str, ...], mixed: bool) -> str:
    if recipe is None:
        return (
            "bigger model (model.widths, model.channels), train longer (training.epochs), less "
            "regularisation (weight decay, dropout, augmentation)"
        )
    parts = [f"bigger model ({fix[0]})" if fix and fix[0].startswith("model.") else "bigger model"]
    parts.append(f"train longer ({_longer_fix(recipe)[0]})")
    less = []
    if recipe.optimizer.weight_decay > 0:
        less.append("optimizer.weight_decay")
    if recipe.regularization.l2 > 0:
        less.append("regularization.l2")
    if recipe.model.dropout > 0:
        less.append("model.dropout")
    if mixed:
        less.append("the mixup/cutmix of augment")
    if less:
        parts.append(f"less regularisation ({', '.join(less)})")
    return ", ".join(parts)


def _curves(
    train: list[dict[str, Any]], val: list[dict[str, Any]], loss: np.ndarray, floor: float
) -> _Curves:
    acc = np.array([r.get("acc", math.nan) for r in train], dtype=float)
    val_acc = np.array([r.get("val_acc", math.nan) for r in val], dtype=float)
    return _Curves(
        steps=np.array([r["step"] for r in train], dtype=float),
        sm=smooth(loss),
        floor=floor,
        acc_sm=smooth(acc) if np.isfinite(acc).all() else None,
        vsteps=[r["step"] for r in val],
        val_loss=np.array([r["val_loss"] for r in val], dtype=float),
        val_acc=val_acc if len(val) and np.isfinite(val_acc).all() else None,
        val=val,
    )


def _test_acc(summary: dict[str, Any] | None) -> float | None:
    """The run's test accuracy from its summary.json (None when it has none)."""
    value = (summary or {}).get("test_acc")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def check_curves(
    records: list[dict[str, Any]],
    figure: str | None = None,
    *,
    recipe: Recipe | None = None,
    summary: dict[str, Any] | None = None,
    val_counts: Sequence[int] | None = None,
) -> list[Finding]:
    """Verdicts on a run's curves (see the module docstring for the rules and thresholds).

    ``figure`` (a PNG name relative to the report folder, from :func:`plot_curves`) is attached
    to every finding returned. ``recipe`` (the run's) gives the training loss's floor (label
    smoothing, mixup/cutmix) and the fixes; ``summary`` (the run's summary.json) the test
    accuracy; ``val_counts`` (validation examples per class) the split's size and chance level.
    Without them the verdicts are the same, less what they need.
    """
    make = _Make(figure)
    train, val = split_records(records)
    if len(train) < 2:
        return [_too_few(train, recipe, summary, make)]
    loss = np.array([r["loss"] for r in train], dtype=float)
    found = _nonfinite(train, loss, recipe, make)
    if found:
        return [found]
    num_classes = len(val_counts) if val_counts else (_recipe_classes(recipe) if recipe else None)
    shares = [n / sum(val_counts) for n in val_counts] if val_counts and sum(val_counts) else None
    floor = loss_floor(recipe, num_classes, shares) if recipe is not None else 0.0
    c = _curves(train, val, loss, floor)
    for verdict in (_exploding, _not_falling):
        found = verdict(c, recipe, make)
        if found:
            return [found]

    findings: list[Finding] = []
    n_val = int(sum(val_counts)) if val_counts is not None else None
    small = _small_split(val_counts, bool(val), recipe, summary, make)
    if small:
        findings.append(small)
    use_val = bool(val) and small is None
    if use_val:
        found = _labels(c, _chance(val_counts, num_classes), n_val, make)
        if found:
            return [*findings, found]
    plateau = _plateau(c, recipe, make)
    if plateau:
        findings.append(plateau)
    test_acc = _test_acc(summary)
    fit = _overfit(c, use_val, test_acc, recipe, make) or _underfit_on_clean(
        c, use_val, test_acc, recipe, make
    )
    if fit:
        findings.append(fit)
    if not any(f.status != "ok" for f in findings):
        findings.append(_healthy(c, n_val, test_acc, make))
    return findings


def _chance(val_counts: Sequence[int] | None, num_classes: int | None) -> float | None:
    """Accuracy at chance: the larger of 1/C and the majority class's share of validation."""
    if val_counts and sum(val_counts):
        return max(1 / len(val_counts), max(val_counts) / sum(val_counts))
    return 1 / num_classes if num_classes else None


def _small_split(
    val_counts: Sequence[int] | None,
    has_val: bool,
    recipe: Recipe | None,
    summary: dict[str, Any] | None,
    make: _Make,
) -> Finding | None:
    """A validation split too small to judge from (the data check's rule), said as such."""
    if not val_counts or not has_val:
        return None
    n, classes = int(sum(val_counts)), len(val_counts)
    why = validation_too_small(n, classes)
    if why is None:
        return None
    instead = "; judged on the test split instead" if _test_acc(summary) is not None else ""
    return make(
        "warn",
        f"validation split too small to judge over- or underfitting: {why}",
        f"a larger validation split (data.val_fraction){instead}",
        fix=_val_fraction_fix(recipe, n, _enough(n, classes)),
        val_examples=n,
    )


def _underfit_on_clean(
    c: _Curves, use_val: bool, test_acc: float | None, recipe: Recipe | None, make: _Make
) -> Finding | None:
    """Underfitting judged on the clean validation accuracy, else the test accuracy."""
    clean_name, clean_acc = "", None
    if use_val and c.val_acc is not None:
        clean_name, clean_acc = "val", float(c.val_acc[-1])
    elif test_acc is not None:
        clean_name, clean_acc = "test", test_acc
    mixed = bool(recipe is not None and _mixers(recipe))
    return _underfit(c, clean_acc, clean_name, mixed, recipe, make)


def _enough(n: int, num_classes: int) -> int:
    """The smallest validation split ``validation_too_small`` accepts (for the fix)."""
    m = max(n, 1)
    while validation_too_small(m, num_classes) is not None and m < 10**7:
        m = max(m + 1, int(m * 1.1))
    return m


def _too_few(
    train: list[dict[str, Any]], recipe: Recipe | None, summary: dict[str, Any] | None, make: _Make
) -> Finding:
    steps = (summary or {}).get("steps")
    fix: tuple[str, ...] = ()
    if recipe is not None and isinstance(steps, int) and steps >= MIN_RECORDS:
        every = max(1, steps // MIN_RECORDS)
        if every < recipe.training.log_every:
            fix = (f"training.log_every={every}",)
    return make(
        "warn",
        f"only {len(train)} training record(s) logged: too few to read a curve",
        "train longer or log more often (training.log_every)",
        fix=fix,
        records=len(train),
    )


def _healthy(c: _Curves, n_val: int | None, test_acc: float | None, make: _Make) -> Finding:
    val_text = ""
    if c.val:
        val_text = f"; val loss {c.val_loss[-1]:.4g}"
        if c.val_acc is not None:
            val_text += f", val accuracy {c.val_acc[-1]:.3f}"
    if test_acc is not None:
        val_text += f", test accuracy {test_acc:.3f}"
    floor = f" (floor {c.floor:.4g})" if c.floor > 0 else ""
    return make(
        "ok",
        f"loss fell {c.start:.4g} -> {c.end:.4g}{floor}{val_text}; no plateau, divergence, "
        "over- or underfitting",
        evals=len(c.val),
        val_examples=n_val,
        **c.base(),
    )


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Loss (raw scatter + moving average, val loss) and accuracy (train, val) side by side."""
    train, val = split_records(records)
    fig, (ax_loss, ax_acc) = new_figure(11, 4.2, ncols=2)
    steps = np.array([r["step"] for r in train], dtype=float)
    loss = np.array([r["loss"] for r in train], dtype=float)
    finite = np.isfinite(loss)
    if len(train):
        ax_loss.scatter(
            steps[finite], loss[finite], s=9, alpha=0.35, color="tab:blue", label="train (raw)"
        )
        if finite.all():
            ax_loss.plot(steps, smooth(loss), color="tab:blue", lw=2, label="train (moving avg)")
        for s in steps[~finite]:
            ax_loss.axvline(s, color="tab:red", ls=":", lw=1)
    if val:
        vs = [r["step"] for r in val]
        ax_loss.plot(vs, [r["val_loss"] for r in val], "o-", color="tab:orange", label="val")
    positive = loss[finite]
    if len(positive) and positive.min() > 0 and positive.max() / positive.min() > 30:
        ax_loss.set_yscale("log")
    ax_loss.set_title("loss")
    ax_loss.set_xlabel("step")
    ax_loss.grid(alpha=0.3)
    if len(train) or val:
        ax_loss.legend(fontsize=8)

    acc = np.array([r.get("acc", math.nan) for r in train], dtype=float)
    drew = False
    if len(acc) and np.isfinite(acc).any():
        ok = np.isfinite(acc)
        ax_acc.scatter(steps[ok], acc[ok], s=9, alpha=0.35, color="tab:blue")
        if ok.all():
            ax_acc.plot(steps, smooth(acc), color="tab:blue", lw=2, label="train (moving avg)")
        drew = True
    vacc = [(r["step"], r["val_acc"]) for r in val if "val_acc" in r]
    if vacc:
        ax_acc.plot(*zip(*vacc, strict=True), "o-", color="tab:orange", label="val")
        drew = True
    if drew:
        ax_acc.set_ylim(-0.02, 1.02)
        ax_acc.legend(fontsize=8, loc="lower right")
    else:
        ax_acc.text(0.5, 0.5, "no accuracy logged", ha="center", va="center")
    ax_acc.set_title("accuracy")
    ax_acc.set_xlabel("step")
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def _monitor_findings(run_dir: Path) -> list[Finding]:
    """The verdicts a run's layer monitor wrote (``training.monitor_every``), if it had one,
    named ``curves.monitor.CHECK``: they come with this check (``--run``), so they carry its name
    first."""
    path = run_dir / "monitor.json"
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())["findings"]
    return [
        Finding(
            f"{CHECK}.monitor.{f['check']}",
            f["status"],
            f["summary"],
            f["advice"],
            f["values"],
            cause=f.get("cause", ""),
            fix=tuple(f.get("fix", ())),
        )
        for f in saved
    ]


def load_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """A run folder's ``summary.json`` (None when it has none or it is unreadable: a run that
    stopped early has curves but may have no summary)."""
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) else None


@CHECK_REGISTRY.register("curves", needs_run=True)
def _check(ctx: Context) -> list[Finding]:
    """With --run: the run's loss curves (and its layer monitor's verdicts, if it had one)."""
    assert ctx.run_dir is not None
    records = load_records(ctx.run_dir)
    plot_curves(records, ctx.out / "curves.png")
    y_val = np.asarray(ctx.parts.splits.y_val)
    counts = np.bincount(y_val.astype(np.int64), minlength=ctx.parts.num_classes)
    findings = check_curves(
        records,
        figure="curves.png",
        recipe=ctx.recipe,
        summary=load_summary(ctx.run_dir),
        val_counts=[int(n) for n in counts],
    )
    return [*findings, *_monitor_findings(ctx.run_dir)]
