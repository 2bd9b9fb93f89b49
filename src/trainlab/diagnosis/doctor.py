"""``trainlab doctor``: every check of the doctor on one recipe, one line per finding, and a
report folder (figures, ``report.html``, ``findings.json``).

The order follows lecture 002's recipe: look at the data, check the initial loss, look at the
layers at init and after a few steps, overfit a small sample, find a learning rate; then, given
a finished or running run folder, read its loss curves.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainlab.diagnosis.findings import Finding, most_severe
from trainlab.engine.build import Parts, build
from trainlab.engine.seeding import preserved_global_state, set_rng_state
from trainlab.engine.step import Step
from trainlab.errors import RunFolderError
from trainlab.recipe import Recipe
from trainlab.registry import Registry

__all__ = ["CHECKS", "CHECK_REGISTRY", "Context", "run_doctor"]

CHECK_REGISTRY = Registry("check", "the doctor's checks, in the order they run (doctor --checks)")


@dataclass(frozen=True)
class Context:
    """What every check is given: the recipe, its built parts (shared: a check that trains
    does so on a copy), the report folder for figures, the run folder (``--run``) and the
    seeds of the lr range test."""

    recipe: Recipe
    parts: Parts
    out: Path
    run_dir: Path | None
    seeds: tuple[int, ...]


def _batches(parts: Parts, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(itertools.islice(parts.loader.epoch(0), count))


def _monitor_findings(run_dir: Path) -> list[Finding]:
    """The verdicts a run's layer monitor wrote (``training.monitor_every``), if it had one."""
    import json

    path = run_dir / "monitor.json"
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())["findings"]
    return [
        Finding(f"monitor.{f['check']}", f["status"], f["summary"], f["advice"], f["values"])
        for f in saved
    ]


@CHECK_REGISTRY.register("data")
def check_data_split(ctx: Context) -> list[Finding]:
    """Look at the data: class balance, input statistics, leaks between splits; a sample grid."""
    from trainlab.diagnosis.data import check_data, plot_class_samples

    plot_class_samples(ctx.parts.splits, ctx.out / "data.png", seed=ctx.recipe.seed)
    return check_data(ctx.parts.splits, figure="data.png")


@CHECK_REGISTRY.register("initial_loss")
def check_initial(ctx: Context) -> Finding:
    """The loss at initialisation against -ln(1/C) (lecture 002's first sanity check)."""
    from trainlab.diagnosis.initial_loss import check_initial_loss

    parts = ctx.parts
    model = copy.deepcopy(parts.model)
    return check_initial_loss(model, _batches(parts, 5), ctx.recipe.loss.name, parts.num_classes)


@CHECK_REGISTRY.register("layers")
def check_layers(ctx: Context) -> Finding:
    """Activations at init and after 50 steps, gradient flow and update/weight ratios."""
    return _layers(ctx.parts, ctx.out, steps=50)


@CHECK_REGISTRY.register("overfit")
def check_overfit_sample(ctx: Context) -> Finding:
    """Overfit a small sample with regularisation off (step 3), and the label probe."""
    from trainlab.diagnosis.overfit import run_overfit_check

    return run_overfit_check(ctx.recipe)


@CHECK_REGISTRY.register("lr_range")
def check_lr_range(ctx: Context) -> Finding:
    """The lr range test over three seeds and lecture 002's 100-iteration rule (step 4)."""
    from trainlab.diagnosis.lr_finder import check_lr, lr_range_test, plot_lr_sweep

    sweep = lr_range_test(ctx.recipe, seeds=ctx.seeds)
    plot_lr_sweep(sweep, ctx.out / "lr_range.png")
    return check_lr(sweep, figure="lr_range.png", current_lr=ctx.parts.base_lr)


@CHECK_REGISTRY.register("curves", needs_run=True)
def check_run_curves(ctx: Context) -> list[Finding]:
    """With --run: the run's loss curves (and its layer monitor's verdicts, if it had one)."""
    from trainlab.diagnosis.curves import check_curves, load_records, plot_curves

    assert ctx.run_dir is not None
    records = load_records(ctx.run_dir)
    plot_curves(records, ctx.out / "curves.png")
    return [*check_curves(records, figure="curves.png"), *_monitor_findings(ctx.run_dir)]


#: the checks ``trainlab doctor --checks`` may name, in the order they run
CHECKS = tuple(CHECK_REGISTRY.names())


def _layers(parts: Parts, out: Path, steps: int) -> Finding:
    """Activation statistics at init and after ``steps`` training steps, plus gradient norms
    and update/weight ratios at the recipe's base learning rate (warm-up would hide them)."""
    from trainlab.diagnosis.activations import activation_stats, check_activations
    from trainlab.diagnosis.gradients import check_gradients, gradient_stats
    from trainlab.diagnosis.layers_plot import plot_layers

    model = copy.deepcopy(parts.model)
    opt = parts.fresh_optimizer(model, weight_decay=0.0)
    step = Step.of(parts, model, opt)
    batches = _batches(parts, steps)
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


def run_doctor(
    recipe: Recipe,
    out: Path,
    run_dir: Path | None = None,
    checks: tuple[str, ...] = CHECKS,
    seeds: tuple[int, ...] = (0, 1, 2),
    on_finding: Callable[[Finding], None] | None = None,
) -> list[Finding]:
    """Run ``checks`` on ``recipe`` (those that need a run only with ``run_dir``), writing
    figures and the report into ``out``; ``on_finding`` sees each finding as soon as it is
    made. The caller's global RNGs and torch's switches are left as they were."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    findings: list[Finding] = []
    with preserved_global_state():
        parts = build(recipe)
        set_rng_state(parts.rng)  # the checks' random draws continue the recipe's stream
        ctx = Context(recipe, parts, out, run_dir, tuple(seeds))
        for name in checks:
            entry = CHECK_REGISTRY.get(name)
            if entry.info.get("needs_run") and run_dir is None:
                continue
            made = entry.factory(ctx)
            for finding in made if isinstance(made, list) else [made]:
                findings.append(finding)
                if on_finding is not None:
                    on_finding(finding)
    from trainlab.diagnosis.report import write_report

    write_report(findings, out, f"trainlab doctor: recipe {recipe.name!r}", recipe.to_yaml())
    return findings
