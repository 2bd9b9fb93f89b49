"""Check 3 of the doctor: the learning-rate range test (Smith 2017, "Cyclical learning rates";
fastai's ``lr_find``) made robust, plus lecture 002's rule ("find a learning rate that makes the
loss drop significantly within ~100 iterations").

Written by hand because no library in the stack has it: torch has no range test, and the
finders of fastai and Lightning give one number from one noisy curve (a known failure).

The sweep. For each seed a fresh model, data order and optimiser are built from the recipe (its
optimiser, weight decay and gradient clipping; no schedule); the lr grows exponentially from
``min_lr`` to ``max_lr`` over ``steps`` mini-batches and the loss of each batch (before its
update) is recorded. The smoothed loss is fastai's bias-corrected exponential moving average;
the sweep stops when it exceeds ``diverge`` x its best value or the loss is NaN/inf.

The suggestion. The EMA lags the raw loss by ``beta / (1 - beta)`` steps (49 at fastai's 0.98,
four decades of lr on the default sweep), which drags any feature read off it to the right. The
analysis therefore reads a *centred* running mean of the raw loss (no lag, a window of about a
third of a decade) and local least-squares slopes of the raw loss against log10(lr) (windows of
about two thirds of a decade, none near the ends). Per seed:

- ``min_lr``: the lr of the lowest centred loss before the sweep stopped;
- the *steepest range*: around the most negative slope, the lrs where the slope is at least half
  as steep (reported and drawn);
- THE suggestion: ``min_lr / 10``, the classic rule of thumb, clipped into the falling part of the
  curve (from 10% to 90% of the way down from the start to the minimum). Why this one: the
  minimum is a level and moves little with noise, while the point of steepest slope is a
  derivative of a noisy curve and jumps between seeds; one decade below the minimum the loss
  still falls fast and training stays stable for far more steps than the sweep spends at any lr.
  Measured (benchmarks/lr_finder.py, digits and MNIST-1D against a half-decade grid of 10-epoch
  runs): min/10 landed 0.1 and 1.0 decade from the grid's best lr, inside its flat top, where
  the steepest point landed 0.9 and 1.2 decades below it and the minimum itself 0.9 above on
  digits.

Across seeds: the suggestion is the median (on a log scale) of the per-seed ones and the spread
is their min and max. The shapes, in the order they are tested:

- ``diverges_at_once``: most seeds stop (divergence or NaN) within the first ``max(5, steps/10)``
  steps, or never fall and rise over those steps: even ``min_lr`` is too high.
- ``no_descent``: the centred loss never falls 10% below the lower of its start and the loss of
  predicting the class frequencies (ln C for balanced classes; a fall from an over-confident init
  down to the prior is not learning): nothing in the range trains the model (labels unrelated
  to the inputs, weights that do not move, a range too low). A healthy 100-step sweep falls
  20-80% below it; digits with shuffled labels 0%.
- ``too_noisy``: the per-seed suggestions spread over more than one decade, or the noise of the
  raw loss around its centred curve is more than half its drop (signal/noise below 2).
- ``ok`` otherwise.

The 100-iteration rule (lecture 002), asked of the suggestion. From the first seed's initial
weights, train at the suggested lr (constant, the recipe's optimiser and weight decay) until the
mean loss of the last 10 steps is 20% below the initial loss; it passes if that happens within
``rule_iters`` (100) steps without diverging, and the number of steps is reported. A try that
diverges or ends 10% above its start is followed by one 10x lower, one that falls too slowly by
one 10x higher (never at or above where the sweeps stopped), ``rule_tries`` (3) tries at most;
the rule's lr is the first that passes. Stopping a try as soon as it passes is what makes the
rule cheap: on the default recipe it passes in about 10 steps, where training every decade lr
for the full 100 steps (the first version) cost 300 of the doctor's 700 steps to find 0.01.

One module per part: ``results`` (:class:`SeedSweep`, :class:`LRSweep`), ``sweep`` (one seed's
sweep and the class-prior loss), ``reading`` (the curve read: centred loss, slopes, suggestion,
shape, where later seeds start), ``rule`` (the 100-iteration rule), ``range_test``
(:func:`lr_range_test`), ``verdict`` (:func:`check_lr`, the doctor's finding) and ``plot``
(:func:`plot_lr_sweep`).
"""

from trainlab.diagnosis.lr_finder.plot import plot_lr_sweep
from trainlab.diagnosis.lr_finder.range_test import lr_range_test
from trainlab.diagnosis.lr_finder.results import LRSweep, SeedSweep
from trainlab.diagnosis.lr_finder.sweep import _sweep_one  # noqa: F401  (tests/engine/test_step.py)
from trainlab.diagnosis.lr_finder.verdict import check_lr

__all__ = ["SeedSweep", "LRSweep", "lr_range_test", "check_lr", "plot_lr_sweep"]
