"""Check 2, "overfit a small sample" (lecture 002, step 3; lecture 004): with every regulariser
off, a network must drive its training loss on a few batches to about zero. If it cannot, later
tuning is pointless; the measurements say which usual cause it is.

Besides the run itself, a probe compares, from the same initial weights, the run on the labels
(up to where its loss has fallen 25%, 30 steps at least) with as many steps on a random
permutation of the labels. Labels that carry information about the inputs are learned clearly
faster than permuted ones; when they are not, the labels are most likely misaligned with the
inputs (the lecture's "label bug"), even if the network manages to memorise them.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context
from trainlab.diagnosis.findings import Finding
from trainlab.engine.build import build
from trainlab.engine.metrics import hard_labels, predictions
from trainlab.engine.seeding import preserved_global_state, set_rng_state
from trainlab.engine.step import Step
from trainlab.recipe import Recipe, resolve_recipe

__all__ = [
    "LabelProbe",
    "OverfitRun",
    "check_overfit",
    "label_probe",
    "overfit_recipe",
    "overfit_sample",
    "run_overfit_check",
]

Batch = tuple[torch.Tensor, torch.Tensor]


def overfit_recipe(recipe: Recipe) -> Recipe:
    """The recipe with augmentation, dropout and its relatives, penalties, weight decay, label
    smoothing, early stopping and the schedule turned off (what the lecture's step 3 asks)."""
    off = [
        "augment=[]",
        "model.dropout=0",
        "model.dropconnect=0",
        "model.stochastic_depth=0",
        "optimizer.weight_decay=0",
        "regularization.l1=0",
        "regularization.l2=0",
        "schedule={name: constant}",
        "training.early_stopping=null",
    ]
    if "label_smoothing" in recipe.loss.params():
        off.append("loss.label_smoothing=0")
    return resolve_recipe(recipe, off)


@dataclass
class OverfitRun:
    """Loss and accuracy on the whole sample (eval mode) every ``every`` steps."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return bool(self.accs) and self.accs[-1] == 1.0

    @property
    def diverged(self) -> bool:
        """Non-finite, or the loss rose far above its start at some point: too large steps."""
        first = self.losses[0]
        return any(not math.isfinite(v) for v in self.losses) or max(self.losses) > 3 * first


@torch.no_grad()
def _measure(model: torch.nn.Module, batches: list[Batch], loss_fn) -> tuple[float, float]:
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in batches:
        scores = model(x).float()
        loss_sum += float(loss_fn(scores, y)) * len(y)
        correct += int((predictions(scores) == hard_labels(y)).sum())
        seen += len(y)
    model.train()
    return loss_sum / seen, correct / seen


def overfit_sample(
    step: Step,
    batches: list[Batch],
    lr: float,
    max_steps: int = 300,
    every: int = 10,
    target_loss: float = 0.05,
) -> OverfitRun:
    """Train ``step``'s model on ``batches`` in turn at ``lr`` until every example is classified
    correctly with a loss below ``target_loss`` (checked every ``every`` steps), for at most
    ``max_steps`` steps. A step the NaN/inf guard refuses ends the run as a divergence."""
    model, loss_fn = step.model, step.loss_fn
    run = OverfitRun()
    loss, acc = _measure(model, batches, loss_fn)
    run.steps.append(0), run.losses.append(loss), run.accs.append(acc)
    model.train()
    for i in range(1, max_steps + 1):
        x, y = batches[(i - 1) % len(batches)]
        if not step(x, y, lr).updated:
            run.steps.append(i), run.losses.append(math.inf), run.accs.append(0.0)
            break
        if i % every == 0 or i == max_steps:
            loss, acc = _measure(model, batches, loss_fn)
            run.steps.append(i), run.losses.append(loss), run.accs.append(acc)
            if not math.isfinite(loss) or (acc == 1.0 and loss < target_loss):
                break
    return run


@dataclass(frozen=True)
class LabelProbe:
    """Loss drops after a few steps from the same weights, on the labels and on a random
    permutation of them, relative to the starting loss."""

    real: float
    permuted: float

    @property
    def label_bug(self) -> bool:
        """Permuted labels are learned (the probe is informative) and the real ones no faster:
        neither a drop 20% larger nor a remaining loss 30% lower. The second matters for a model
        that memorises both: on MNIST-1D 30 steps leave 2.2% of the loss on the labels and 10%
        on a permutation, drops of 98% and 90% (the drops alone called that a label bug)."""
        faster = self.real > 1.2 * self.permuted or 1 - self.real < 0.7 * (1 - self.permuted)
        return self.permuted > 0.05 and not faster


def _drop(start: float, end: float) -> float:
    return (start - end) / start if math.isfinite(end) and start > 0 else 0.0


def label_probe(
    model: torch.nn.Module,
    make_step: Callable[[torch.nn.Module], Step],
    batches: list[Batch],
    lr: float,
    steps: int = 30,
    real: float | None = None,
) -> LabelProbe:
    """Train copies of ``model`` (each with ``make_step(copy)``, the recipe's step over it) for
    ``steps`` steps on a random permutation of the labels and, unless its drop is given as
    ``real`` (the overfit run measures it), on the labels."""

    def drop(data: list[Batch]) -> float:
        net = copy.deepcopy(model)
        step = make_step(net)
        start, _ = _measure(net, data, step.loss_fn)
        overfit_sample(step, data, lr, steps, every=steps, target_loss=0)
        return _drop(start, _measure(net, data, step.loss_fn)[0])

    gen = torch.Generator().manual_seed(0)
    permuted = [(x, y[torch.randperm(len(y), generator=gen).to(y.device)]) for x, y in batches]
    return LabelProbe(drop(batches) if real is None else real, drop(permuted))


def check_overfit(
    run: OverfitRun, probe: LabelProbe, lr: float, initial_expected: float | None
) -> Finding:
    """The verdict on an overfit run and the label probe, naming the likely cause on failure."""
    first, last = run.losses[0], run.losses[-1]
    values = {
        "steps": run.steps[-1],
        "final_loss": last,
        "final_acc": run.accs[-1],
        "initial_loss": first,
        "probe_drop_labels": probe.real,
        "probe_drop_permuted": probe.permuted,
        "lr": lr,
    }
    if run.diverged:
        cause = f"learning rate too high (optimizer.lr={lr:g}): lower it 3-10x"
    elif probe.label_bug:
        return Finding(
            "overfit",
            "fail",
            f"labels are learned no faster than randomly permuted ones (loss drop "
            f"{100 * probe.real:.0f}% vs {100 * probe.permuted:.0f}% in the probe)",
            "check that labels are aligned with the inputs (shuffled or mis-sorted labels?)",
            values,
        )
    elif run.reached:
        return Finding(
            "overfit",
            "ok",
            f"100% of the sample fitted in {run.steps[-1]} steps, loss {last:.3g}",
            values=values,
        )
    elif last > 0.9 * first:
        too_high = initial_expected is not None and first > 1.5 * initial_expected
        cause = (
            "bad initialisation: the initial loss is far above ln C (check init, last layer)"
            if too_high
            else f"learning rate too low (optimizer.lr={lr:g}) or a dead network: raise lr 10x"
        )
    else:
        cause = "model too small or too few steps: widen/deepen it, or raise the lr"
    return Finding(
        "overfit",
        "fail",
        f"accuracy {100 * run.accs[-1]:.1f}% and loss {last:.3g} (from {first:.3g}) on the "
        f"sample after {run.steps[-1]} steps",
        cause,
        values,
    )


PROBE_DROP = 0.25  # the labels' loss must have fallen this much before the probe compares


def _probe_point(run: OverfitRun, probe_steps: int) -> int:
    """The run's measurement the label probe compares against: the first at or after
    ``probe_steps`` where the loss has fallen PROBE_DROP (the run's first steps are the probe's
    real-label copy: same weights, optimiser and batches, so only the permuted copy trains
    again, for as many steps), else the last. Comparing earlier reads nothing: a sigmoid net
    still on its initial plateau drops 7% in 30 steps on real and permuted labels alike, and
    was called a label bug, though it fits the sample later."""
    for i, step in enumerate(run.steps):
        if step >= probe_steps and _drop(run.losses[0], run.losses[i]) >= PROBE_DROP:
            return i
    return len(run.steps) - 1


def run_overfit_check(
    recipe: Recipe, batches: int = 5, max_steps: int = 300, probe_steps: int = 30
) -> Finding:
    """Check 2 on a recipe: its model and step, regularisation off, ``batches`` batches."""
    plain = overfit_recipe(recipe)
    with preserved_global_state():
        parts = build(plain)
        set_rng_state(parts.rng)  # the run's random draws continue the recipe's stream
        sample = list(itertools.islice(parts.loader.epoch(0), batches))
        initial = copy.deepcopy(parts.model)
        run = overfit_sample(Step.of(parts), sample, parts.base_lr, max_steps)
        k = _probe_point(run, probe_steps)
        probe = label_probe(
            initial,
            lambda net: Step.of(parts, net, parts.fresh_optimizer(net, weight_decay=0.0)),
            sample,
            parts.base_lr,
            steps=max(run.steps[k], 1),
            real=_drop(run.losses[0], run.losses[k]),
        )
    expected = math.log(parts.num_classes) if plain.loss.name == "cross_entropy" else None
    return check_overfit(run, probe, parts.base_lr, expected)


@CHECK_REGISTRY.register("overfit")
def _check(ctx: Context) -> Finding:
    """Overfit a small sample with regularisation off (step 3), and the label probe."""
    return run_overfit_check(ctx.recipe)
