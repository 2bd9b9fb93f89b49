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
from trainlab.diagnosis.remedies import lr_fix, wider_model
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

# Healthy recipes fit their 5-batch sample to a loss of 0.05 within 30-40 steps (digits and
# MNIST-1D, seeds 0-2: 0.026-0.075 at step 30, 0.003-0.013 at step 60), so 300 steps is 8x the
# need and 0.05 (2% of ln 10) is "near zero". A model too small for the sample has a loss that
# stops falling: less than 10% off over the run's last third (an MLP of width 2 on digits:
# 1.2 -> 1.15), where a healthy one still halves it.
STALL_FALL = 0.10
# The lr probe of a run whose loss barely moved: 30 steps from the same weights at 10x the lr,
# against the run's own first 30 steps. A loss that falls 3x faster (and by 2% at least) says
# the lr was too low (Adam at 1e-5 on digits: 0.6% then 6.5%); one that does not says the
# network does not learn at any lr near this one (dead units, symmetric weights: both ~0).
LR_PROBE_STEPS, LR_PROBE_FACTOR, LR_PROBE_GAIN, LR_PROBE_MIN = 30, 10.0, 3.0, 0.02


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
    target_loss: float = 0.05

    @property
    def reached(self) -> bool:
        """Every example right AND the loss near zero: 100% accuracy at a loss of 1.4 is a
        model whose scores cannot grow (probabilities fed as logits), not a fitted sample."""
        return bool(self.accs) and self.accs[-1] == 1.0 and self.losses[-1] <= self.target_loss

    @property
    def stalled(self) -> bool:
        """The loss fell less than ``STALL_FALL`` over the run's last third: more steps of the
        same would not fit it (a model too small), as opposed to one still falling."""
        if len(self.losses) < 4:
            return False
        cut = next(i for i, s in enumerate(self.steps) if s >= 2 * self.steps[-1] / 3)
        then, last = self.losses[cut], self.losses[-1]
        return math.isfinite(last) and then > 0 and (then - last) / then < STALL_FALL

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
    run = OverfitRun(target_loss=target_loss)
    loss, acc = _measure(model, batches, loss_fn)
    run.steps.append(0), run.losses.append(loss), run.accs.append(acc)
    model.train()
    for i in range(1, max_steps + 1):
        x, y = batches[(i - 1) % len(batches)]
        if not step.take(x, y, lr).updated:
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
    run: OverfitRun,
    probe: LabelProbe,
    lr: float,
    initial_expected: float | None,
    *,
    recipe: Recipe | None = None,
    lr_probe: float | None = None,
) -> Finding:
    """The verdict on an overfit run and the label probe, naming the likely cause on failure.

    ``recipe`` (the one diagnosed) words the fixes; ``lr_probe`` is the loss drop of
    ``LR_PROBE_STEPS`` steps at ``LR_PROBE_FACTOR`` x the lr, measured when the run's loss
    barely moved (it separates "lr too low" from "a network that does not learn").
    """
    first, last = run.losses[0], run.losses[-1]
    values = {
        "steps": run.steps[-1],
        "final_loss": last,
        "final_acc": run.accs[-1],
        "initial_loss": first,
        "target_loss": run.target_loss,
        "probe_drop_labels": probe.real,
        "probe_drop_permuted": probe.permuted,
        "lr": lr,
        "lr_probe_drop": lr_probe,
    }

    def fail(summary: str, advice: str, cause: str, fix: tuple[str, ...] = ()) -> Finding:
        return Finding("overfit", "fail", summary, advice, values, cause=cause, fix=fix)

    measured = (
        f"accuracy {100 * run.accs[-1]:.1f}% and loss {last:.3g} (from {first:.3g}) on the "
        f"sample after {run.steps[-1]} steps"
    )
    if run.diverged:
        fix = lr_fix(recipe and recipe.optimizer.lr, 0.1)
        return fail(measured, f"the loss diverged: the learning rate is too high ({lr:g}); "
                    f"lower it 10x{_as(fix)}", "lr.high", fix)  # fmt: skip
    if probe.label_bug:
        return fail(
            f"labels are learned no faster than randomly permuted ones (loss drop "
            f"{100 * probe.real:.0f}% vs {100 * probe.permuted:.0f}% in the probe)",
            "check that labels are aligned with the inputs (shuffled or mis-sorted labels?)",
            "data.labels",
        )
    if run.reached:
        return Finding(
            "overfit",
            "ok",
            f"100% of the sample fitted in {run.steps[-1]} steps, loss {last:.3g} "
            f"(<= {run.target_loss:g})",
            values=values,
        )
    if run.accs[-1] == 1.0:  # every example right, yet the loss stays far from zero
        return fail(
            f"{measured}: every example is right but the loss stays above {run.target_loss:g}",
            "the scores cannot grow: a softmax or sigmoid at the end of the model before a "
            "loss that expects logits (remove it), or scores squashed by the last layer",
            "model.output",
        )
    if last > 0.9 * first:
        if initial_expected is not None and first > 1.5 * initial_expected:
            return fail(measured, "the initial loss is far above ln C and does not come down: "
                        "the last layer's init (see initial_loss)", "init.last_layer")  # fmt: skip
        early = _drop(first, _loss_at(run, LR_PROBE_STEPS))
        values["run_drop_at_probe_steps"] = early
        if lr_probe is not None and lr_probe >= max(LR_PROBE_GAIN * early, LR_PROBE_MIN):
            fix = lr_fix(recipe and recipe.optimizer.lr, LR_PROBE_FACTOR)
            return fail(
                measured,
                f"the learning rate is too low ({lr:g}): {LR_PROBE_FACTOR:g}x takes "
                f"{100 * lr_probe:.0f}% off the loss in {LR_PROBE_STEPS} steps where it took "
                f"{100 * early:.1f}%{_as(fix)}",
                "lr.low",
                fix,
            )
        higher = "" if lr_probe is None else f" (nor at {LR_PROBE_FACTOR:g}x the lr)"
        return fail(
            measured,
            f"the network does not learn at this lr{higher}: look for dead or saturated units, "
            "vanishing gradients or symmetric weights (the layers check)",
            "gradients",
        )
    if run.stalled:
        fix = wider_model(recipe)
        return fail(
            measured,
            f"the loss stopped falling before the sample was fitted: the model is too small "
            f"for it; widen or deepen it{_as(fix)}",
            "capacity",
            fix,
        )
    fix = lr_fix(recipe and recipe.optimizer.lr, 3.0)
    return fail(
        measured,
        f"the loss still falls but too slowly to fit the sample in {run.steps[-1]} steps: "
        f"raise the learning rate{_as(fix)}",
        "lr.low",
        fix,
    )


def _loss_at(run: OverfitRun, step: int) -> float:
    """The run's loss at its first measurement at or after ``step`` (else its last)."""
    pairs = zip(run.steps, run.losses, strict=True)
    return next((loss for at, loss in pairs if at >= step), run.losses[-1])


def _as(fix: tuple[str, ...]) -> str:
    return f" ({' '.join(fix)})" if fix else ""


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
    """Check 2 on a recipe: its model and step, regularisation off, ``batches`` batches (for
    full-batch optimisers: as many examples, as one batch, at most 50 closure steps)."""
    plain = overfit_recipe(recipe)
    with preserved_global_state():
        parts = build(plain)
        set_rng_state(parts.rng)  # the run's random draws continue the recipe's stream
        sample = _sample(parts, batches)
        if parts.needs_closure:
            max_steps, probe_steps = min(max_steps, FULL_BATCH_STEPS), 5
        initial = copy.deepcopy(parts.model)
        run = overfit_sample(Step.of(parts), sample, parts.base_lr, max_steps, every=_every(parts))
        k = _probe_point(run, probe_steps)

        def make_step(net: torch.nn.Module) -> Step:
            return Step.of(parts, net, parts.fresh_optimizer(net, weight_decay=0.0))

        probe = label_probe(
            initial,
            make_step,
            sample,
            parts.base_lr,
            steps=max(run.steps[k], 1),
            real=_drop(run.losses[0], run.losses[k]),
        )
        lr_probe = None
        if not run.diverged and not run.reached and run.losses[-1] > 0.9 * run.losses[0]:
            lr_probe = _lr_probe(initial, make_step, sample, parts.base_lr * LR_PROBE_FACTOR)
    expected = math.log(parts.num_classes) if plain.loss.name == "cross_entropy" else None
    return check_overfit(run, probe, parts.base_lr, expected, recipe=recipe, lr_probe=lr_probe)


FULL_BATCH_STEPS = 50  # closure steps of L-BFGS (each up to max_iter evaluations)


def _every(parts) -> int:  # noqa: ANN001 - Parts, imported lazily by the engine
    return 1 if parts.needs_closure else 10


def _sample(parts, batches: int) -> list[Batch]:  # noqa: ANN001
    """The first ``batches`` training batches; for full-batch optimisers, as many examples
    of the full batch as one batch (L-BFGS on a sample is still full-batch on that sample)."""
    if parts.needs_closure:
        x, y = parts.loader.full_batch()
        n = batches * parts.recipe.training.batch_size
        return [(x[:n], y[:n])]
    return list(itertools.islice(parts.loader.epoch(0), batches))


def _lr_probe(model, make_step, sample: list[Batch], lr: float) -> float:  # noqa: ANN001
    """The loss drop of ``LR_PROBE_STEPS`` steps from ``model``'s weights at ``lr``."""
    net = copy.deepcopy(model)
    step = make_step(net)
    start, _ = _measure(net, sample, step.loss_fn)
    overfit_sample(step, sample, lr, LR_PROBE_STEPS, every=LR_PROBE_STEPS, target_loss=0)
    return _drop(start, _measure(net, sample, step.loss_fn)[0])


@CHECK_REGISTRY.register("overfit")
def _check(ctx: Context) -> Finding:
    """Overfit a small sample with regularisation off (step 3), and the label probe."""
    return run_overfit_check(ctx.recipe)
