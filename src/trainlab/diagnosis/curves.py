"""Check 6, the curves: read ``metrics.jsonl`` and say what the loss and accuracy curves show.

Lecture 002, step 6 ("Look at learning curves!"): losses are noisy, so the loss is plotted raw
(a scatter) and with a moving average; the verdicts follow the lecture's list ("loss not going
down? lr too low, bad initialisation; loss explodes to Inf or NaN? lr too high") and lecture 004's
over/underfitting. Training records (``loss``, ``acc``, ``lr`` at a ``step``) are averages over a
logging window of ``training.log_every`` steps; validation records carry ``val_loss`` and
``val_acc`` once per evaluation.

Verdicts, checked in this order (the first two make the others meaningless, so they end it):

1. **exploding** (fail): a non-finite training loss, or the smoothed loss ending above
   ``EXPLODE_END`` x its start or peaking above ``EXPLODE_PEAK`` x its start. A loss that rises
   that far is not noise: a window average of 20 batches does not move 50% up by chance.
2. **not going down** (fail): the smoothed loss never falls ``MIN_FALL`` (10%) below its start.
   Any learning rate that trains at all takes 10% off the initial loss within a run.
3. **plateau at the start** (warn): the smoothed loss needs at least ``PLATEAU_SPAN`` (15%) of the
   run to fall its first ``PLATEAU_FALL`` (10%) of the start value, that flat stretch holds at least
   ``PLATEAU_POINTS`` logged records (so it is measured, not an artefact of coarse logging), and the
   loss then falls by at least ``PLATEAU_THEN`` (30%) overall: the lecture's bad-init shape. A
   healthy curve falls fastest at the start.
4. **overfitting** (warn): with at least ``MIN_EVALS`` evaluations, the validation loss ends
   ``OVERFIT_VAL_RISE`` (10%) above its minimum while the training loss kept falling, or the
   train-minus-val accuracy gap ends above ``OVERFIT_ACC_GAP`` (0.10) having grown by
   ``OVERFIT_GAP_GROWTH`` (0.05) since the first evaluation.
5. **underfitting** (warn): training accuracy ends below ``UNDERFIT_ACC`` (0.80) or the training
   loss ends above ``UNDERFIT_LOSS`` (half) of its start, and validation is no better than train
   allows (accuracy gap under ``UNDERFIT_GAP``): both poor and close together is high bias.

Otherwise one ``ok`` finding. The measured numbers are in each finding's ``values``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context
from trainlab.diagnosis.findings import Finding
from trainlab.errors import TrainlabError
from trainlab.figures import new_figure, save_figure

__all__ = ["check_curves", "load_records", "plot_curves", "smooth", "split_records"]

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
UNDERFIT_GAP = 0.05

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


def check_curves(records: list[dict[str, Any]], figure: str | None = None) -> list[Finding]:
    """Verdicts on a run's curves (see the module docstring for the rules and thresholds).

    ``figure`` (a PNG name relative to the report folder, from :func:`plot_curves`) is attached
    to every finding returned.
    """
    figures = (figure,) if figure else ()
    train, val = split_records(records)

    def finding(status: str, summary: str, advice: str = "", **values: Any) -> Finding:
        return Finding(CHECK, status, summary, advice, values, figures)  # type: ignore[arg-type]

    if len(train) < 2:
        return [
            finding(
                "warn",
                f"only {len(train)} training record(s) logged: too few to read a curve",
                "train longer or log more often (training.log_every)",
                records=len(train),
            )
        ]
    steps = np.array([r["step"] for r in train], dtype=float)
    loss = np.array([r["loss"] for r in train], dtype=float)
    bad = np.flatnonzero(~np.isfinite(loss))
    if bad.size:
        r = train[bad[0]]
        return [
            finding(
                "fail",
                f"loss exploded: {r['loss']} at step {r['step']} (started at {loss[0]:.4g})",
                "lower the learning rate (try 10x lower), add gradient clipping, check the init",
                first_bad_step=r["step"],
                start_loss=_f(loss[0]),
            )
        ]
    sm = smooth(loss)
    start, end, peak, low = sm[0], sm[-1], float(sm.max()), float(sm.min())
    base = {"start_loss": _f(start), "end_loss": _f(end), "min_loss": _f(low)}
    if start > 0 and (end > EXPLODE_END * start or peak > EXPLODE_PEAK * start):
        at = int(steps[int(np.argmax(sm))])
        return [
            finding(
                "fail",
                f"loss exploded: smoothed loss went from {start:.4g} to {peak:.4g} (step {at}) "
                f"and ended at {end:.4g}",
                "lower the learning rate (try 10x lower), add gradient clipping or warm-up",
                peak_loss=_f(peak),
                peak_step=at,
                **base,
            )
        ]
    fall = (start - low) / start if start > 0 else 0.0
    if start > 1e-3 and fall < MIN_FALL:
        return [
            finding(
                "fail",
                f"loss is not going down: smoothed loss {start:.4g} -> {end:.4g} "
                f"(best fall {fall:.1%}, expected at least {MIN_FALL:.0%})",
                "raise the learning rate (try 10x higher: trainlab lr-find), then check the init",
                fall=_f(fall),
                **base,
            )
        ]

    found: list[Finding] = []
    span = steps[-1] - steps[0]
    below = np.flatnonzero(sm <= start * (1 - PLATEAU_FALL))
    first = int(below[0]) if below.size else len(sm) - 1
    plateau_frac = (steps[first] - steps[0]) / span if span > 0 else 0.0
    if (
        plateau_frac >= PLATEAU_SPAN
        and first >= PLATEAU_POINTS
        and (start - end) / start >= PLATEAU_THEN
    ):
        found.append(
            finding(
                "warn",
                f"loss plateau at the start: flat at {start:.4g} for {plateau_frac:.0%} of the "
                f"run (until step {int(steps[first])}), then fell to {end:.4g}",
                "bad initialisation: check the initial loss and the init (Kaiming for ReLU, "
                "Xavier for tanh), or use a learning-rate warm-up",
                plateau_fraction=_f(plateau_frac),
                plateau_end_step=int(steps[first]),
                **base,
            )
        )

    acc = np.array([r.get("acc", math.nan) for r in train], dtype=float)
    acc_sm = smooth(acc) if np.isfinite(acc).all() else None
    val_loss = np.array([r["val_loss"] for r in val], dtype=float)
    val_acc = np.array([r.get("val_acc", math.nan) for r in val], dtype=float)
    has_val_acc = len(val) > 0 and bool(np.isfinite(val_acc).all())

    def train_at(step: float, series: np.ndarray) -> float:
        """The smoothed training series at the last record at or before ``step``."""
        i = max(0, int(np.searchsorted(steps, step, side="right")) - 1)
        return float(series[i])

    overfit = None
    if len(val) >= MIN_EVALS and np.isfinite(val_loss).all():
        vsteps = [r["step"] for r in val]
        best = int(np.argmin(val_loss))
        rise = (val_loss[-1] - val_loss[best]) / val_loss[best] if val_loss[best] > 0 else 0.0
        train_fell = train_at(vsteps[-1], sm) < train_at(vsteps[best], sm)
        gaps = (
            [train_at(s, acc_sm) - a for s, a in zip(vsteps, val_acc, strict=True)]
            if acc_sm is not None and has_val_acc
            else None
        )
        values = {
            "val_loss_min": _f(val_loss[best]),
            "val_loss_end": _f(val_loss[-1]),
            "best_epoch": val[best].get("epoch"),
            "best_step": vsteps[best],
        }
        if gaps is not None:
            values.update(acc_gap_first=_f(gaps[0]), acc_gap_end=_f(gaps[-1]))
        if best < len(val) - 1 and rise >= OVERFIT_VAL_RISE and train_fell:
            overfit = (
                f"overfitting: val loss rose {rise:.0%} above its minimum {val_loss[best]:.4g} "
                f"(epoch {val[best].get('epoch')}) while the training loss kept falling"
            )
        elif (
            gaps is not None
            and gaps[-1] >= OVERFIT_ACC_GAP
            and gaps[-1] - gaps[0] >= OVERFIT_GAP_GROWTH
        ):
            overfit = (
                f"overfitting: train-val accuracy gap grew from {gaps[0]:.3f} to {gaps[-1]:.3f}"
            )
        if overfit:
            found.append(
                finding(
                    "warn",
                    overfit,
                    "regularise (weight decay, dropout), augment the data, or stop earlier "
                    f"(early stopping; validation was best at epoch {val[best].get('epoch')})",
                    val_rise=_f(rise),
                    **values,
                    **base,
                )
            )

    if overfit is None:
        end_acc = float(acc_sm[-1]) if acc_sm is not None else None
        poor = (end_acc is not None and end_acc < UNDERFIT_ACC) or end > UNDERFIT_LOSS * start
        end_gap = end_acc - float(val_acc[-1]) if end_acc is not None and has_val_acc else None
        close = end_gap is None or end_gap < UNDERFIT_GAP
        if poor and close:
            val_text = f", val accuracy {val_acc[-1]:.3f}" if has_val_acc else ""
            acc_text = f"train accuracy {end_acc:.3f}" if end_acc is not None else ""
            found.append(
                finding(
                    "warn",
                    f"underfitting: train and val both poor ({acc_text}{val_text}; loss "
                    f"{start:.4g} -> {end:.4g}, {end / start:.0%} of its start)",
                    "bigger model, train longer, less regularisation (weight decay, dropout, "
                    "augmentation)",
                    end_acc=None if end_acc is None else _f(end_acc),
                    end_val_acc=_f(val_acc[-1]) if has_val_acc else None,
                    **base,
                )
            )

    if not found:
        val_text = ""
        if len(val):
            val_text = f"; val loss {val_loss[-1]:.4g}"
            if has_val_acc:
                val_text += f", val accuracy {val_acc[-1]:.3f}"
        found.append(
            finding(
                "ok",
                f"loss fell {start:.4g} -> {end:.4g} ({(start - end) / start:.0%}){val_text}; "
                "no plateau, divergence, over- or underfitting",
                evals=len(val),
                **base,
            )
        )
    return found


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
    """The verdicts a run's layer monitor wrote (``training.monitor_every``), if it had one."""
    path = run_dir / "monitor.json"
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())["findings"]
    return [
        Finding(f"monitor.{f['check']}", f["status"], f["summary"], f["advice"], f["values"])
        for f in saved
    ]


@CHECK_REGISTRY.register("curves", needs_run=True)
def _check(ctx: Context) -> list[Finding]:
    """With --run: the run's loss curves (and its layer monitor's verdicts, if it had one)."""
    assert ctx.run_dir is not None
    records = load_records(ctx.run_dir)
    plot_curves(records, ctx.out / "curves.png")
    return [*check_curves(records, figure="curves.png"), *_monitor_findings(ctx.run_dir)]
