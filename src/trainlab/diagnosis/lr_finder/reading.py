"""Reading a sweep's curve: the centred loss (no lag), local slopes, the minimum, the steepest
range and the suggestion per seed; the shape across seeds; where later seeds start."""

from __future__ import annotations

import math

import numpy as np

from trainlab.diagnosis.lr_finder.results import SeedSweep

# the thresholds (see the package docstring for why)
NO_DESCENT_DROP = 0.1  # smoothed loss must fall below (1 - this) x its start
NOISE_TO_DROP = 0.5  # noise (std of raw around smoothed) above this x the drop: too noisy
SPREAD_DECADES = 1.0  # per-seed suggestions further apart than this: too noisy


def _centred(values: np.ndarray, half: int) -> np.ndarray:
    """Running mean over ``2 * half + 1`` points, the window shrinking (symmetrically) at the
    ends so that it never lags."""
    n = len(values)
    out = np.empty(n)
    for i in range(n):
        h = min(half, i, n - 1 - i)
        out[i] = values[i - h : i + h + 1].mean()
    return out


def _analyse(
    seed: int,
    lrs: np.ndarray,
    losses: list[float],
    smoothed: list[float],
    stop: str,
    steps_per_decade: float,
    chance: float = math.nan,
) -> SeedSweep:
    raw = np.asarray(losses, dtype=float)
    finite = raw[np.isfinite(raw)] if len(raw) else raw
    n = len(finite) if stop == "nonfinite" else len(raw)
    raw = raw[:n]
    lr = lrs[:n]
    none = SeedSweep(
        seed,
        tuple(float(x) for x in lrs[: len(losses)]),
        tuple(float(x) for x in losses),
        tuple(float(x) for x in smoothed),
        tuple(float(x) for x in raw),
        stop,
        float(raw[0]) if n else math.nan,
        float(raw.min()) if n else math.nan,
        None,
        None,
        None,
        None,
        0.0,
        0.0,
    )
    if n < 3:
        return none
    half = max(1, round(steps_per_decade / 6))  # a window of about a third of a decade
    centred = _centred(raw, half)
    start = float(np.median(raw[: min(5, n)]))
    m = int(np.argmin(centred))
    min_loss = float(centred[m])
    # a fall from an over-confident init down to the class prior is not learning: measure the
    # drop from the lower of the start and the loss of predicting the class frequencies
    ref = min(start, chance) if math.isfinite(chance) else start
    drop = max(0.0, (ref - min_loss) / abs(ref)) if ref else 0.0
    resid = raw[: m + 1] - centred[: m + 1]
    noise = float(resid.std()) if m >= 2 else 0.0
    steep_lr = steep_range = suggestion = None
    if m >= 1:
        slope = _local_slopes(raw[: m + 1], np.log10(lr[: m + 1]), 2 * half)
        k = int(np.nanargmin(slope)) if np.isfinite(slope).any() else -1
        if k >= 0 and slope[k] < 0:
            lo = hi = k
            while lo > 0 and slope[lo - 1] <= 0.5 * slope[k]:
                lo -= 1
            while hi < m and slope[hi + 1] <= 0.5 * slope[k]:
                hi += 1
            steep_lr = float(lr[k])
            steep_range = (float(lr[lo]), float(lr[hi]))
        if start > min_loss:
            # the falling part: from 10% to 90% of the way down from the start to the minimum
            gone = (start - centred[: m + 1]) / (start - min_loss)
            a = int(np.argmax(gone >= 0.1))
            b = int(np.argmax(gone >= 0.9))
            suggestion = float(np.clip(lr[m] / 10, lr[a], lr[max(a, b)]))
    return SeedSweep(
        seed,
        none.lrs,
        none.losses,
        none.smoothed,
        tuple(float(x) for x in centred),
        stop,
        start,
        min_loss,
        float(lr[m]),
        steep_lr,
        steep_range,
        suggestion,
        drop,
        noise,
        chance,
    )


def _local_slopes(y: np.ndarray, x: np.ndarray, half: int) -> np.ndarray:
    """Least-squares slope of ``y`` against ``x`` over ``[i - half, i + half]`` at each point
    whose window fits entirely (NaN near the ends, where a shrunken window is all noise)."""
    n = len(y)
    out = np.full(n, np.nan)
    if n < 3:
        return out
    half = min(half, (n - 1) // 2)
    for i in range(half, n - half):
        xs, ys = x[i - half : i + half + 1], y[i - half : i + half + 1]
        xc = xs - xs.mean()
        out[i] = float((xc * (ys - ys.mean())).sum() / (xc * xc).sum())
    return out


def _geo_median(values: list[float]) -> float:
    """The median on a log scale; for an odd count exactly one of the values."""
    v = sorted(values)
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else math.sqrt(v[mid - 1] * v[mid])


def _shape(seeds: list[SeedSweep], early: int) -> tuple[str, float, float]:
    """The curve's shape (see the package docstring) and the two noise measures."""
    stopped_early = [len(s.losses) <= early and s.stop != "end" for s in seeds]
    rose = [
        s.stop != "end" and s.drop < NO_DESCENT_DROP and len(s.centred) > 2
        and s.centred[min(early, len(s.centred) - 1)] > s.start_loss
        and (s.min_lr is None or s.min_lr <= s.lrs[min(early, len(s.lrs) - 1)])
        for s in seeds
    ]  # fmt: skip
    sugg = [s.suggestion for s in seeds if s.suggestion is not None]
    spread = math.log10(max(sugg) / min(sugg)) if sugg else 0.0
    ratios = [s.noise / (s.start_loss - s.min_loss) for s in seeds if s.start_loss > s.min_loss]
    noise_to_drop = float(np.median(ratios)) if ratios else math.inf
    majority = len(seeds) // 2 + 1
    if sum(a or b for a, b in zip(stopped_early, rose, strict=True)) >= majority:
        return "diverges_at_once", spread, noise_to_drop
    if float(np.median([s.drop for s in seeds])) < NO_DESCENT_DROP or len(sugg) < majority:
        return "no_descent", spread, noise_to_drop
    if spread > SPREAD_DECADES or noise_to_drop > NOISE_TO_DROP:
        return "too_noisy", spread, noise_to_drop
    return "ok", spread, noise_to_drop


def _start_index(lrs: np.ndarray, first: SeedSweep, narrow: float | None) -> int:
    """Where a later seed's sweep starts: ``narrow`` decades below the first seed's minimum-loss
    lr. Below that the lr is too small to move the weights (the steps before it add up to less
    than a thousandth of the lr spent up to the minimum), so the curve from there on is the one
    a full sweep draws, and the 3-4 decades skipped are a third of each sweep. The whole range
    when the first seed found no healthy minimum: its shape must then be confirmed in full (and
    a narrowed seed that blows up within its first steps or finds no minimum is swept again in
    full, so that every shape is judged on the whole range)."""
    if narrow is None or first.suggestion is None or first.min_lr is None:
        return 0
    return int(np.searchsorted(lrs, first.min_lr / 10**narrow))
