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
from pathlib import Path

import torch

from trainlab.diagnosis.findings import Finding, most_severe
from trainlab.engine.build import Parts, build
from trainlab.engine.seeding import preserved_global_state, set_rng_state
from trainlab.engine.step import Step
from trainlab.errors import RunFolderError
from trainlab.recipe import Recipe

__all__ = ["CHECKS", "run_doctor"]

#: the checks ``trainlab doctor --checks`` may name, in the order they run
CHECKS = ("data", "initial_loss", "layers", "overfit", "lr_range", "curves")


def _batches(parts: Parts, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(itertools.islice(parts.loader.epoch(0), count))


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
    for x, y in batches:
        if not step(x, y, parts.base_lr).updated:
            break  # a non-finite loss or gradient: the statistics below say where
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
        {"activations": act.values, "gradients": grad.values, "steps": len(batches)},
        ("layers.png",),
    )


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


def run_doctor(
    recipe: Recipe,
    out: Path,
    run_dir: Path | None = None,
    checks: tuple[str, ...] = CHECKS,
    seeds: tuple[int, ...] = (0, 1, 2),
    on_finding: Callable[[Finding], None] | None = None,
) -> list[Finding]:
    """Run ``checks`` on ``recipe`` (curves only with ``run_dir``), writing figures and the
    report into ``out``; ``on_finding`` sees each finding as soon as it is made."""
    with preserved_global_state():
        return _run(recipe, out, run_dir, checks, seeds, on_finding)


def _run(
    recipe: Recipe,
    out: Path,
    run_dir: Path | None,
    checks: tuple[str, ...],
    seeds: tuple[int, ...],
    on_finding: Callable[[Finding], None] | None,
) -> list[Finding]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    parts = build(recipe)
    set_rng_state(parts.rng)  # the checks' random draws continue the recipe's stream
    findings: list[Finding] = []

    def add(new: Finding | list[Finding]) -> None:
        for finding in new if isinstance(new, list) else [new]:
            findings.append(finding)
            if on_finding is not None:
                on_finding(finding)

    for check in checks:
        if check == "data":
            from trainlab.diagnosis.data import check_data, plot_class_samples

            plot_class_samples(parts.splits, out / "data.png", seed=recipe.seed)
            add(check_data(parts.splits, figure="data.png"))
        elif check == "initial_loss":
            from trainlab.diagnosis.initial_loss import check_initial_loss

            model = copy.deepcopy(parts.model)
            add(check_initial_loss(model, _batches(parts, 5), recipe.loss.name, parts.num_classes))
        elif check == "layers":
            add(_layers(parts, out, steps=50))
        elif check == "overfit":
            from trainlab.diagnosis.overfit import run_overfit_check

            add(run_overfit_check(recipe))
        elif check == "lr_range":
            from trainlab.diagnosis.lr_finder import check_lr, lr_range_test, plot_lr_sweep

            sweep = lr_range_test(recipe, seeds=seeds)
            plot_lr_sweep(sweep, out / "lr_range.png")
            add(check_lr(sweep, figure="lr_range.png", current_lr=parts.base_lr))
        elif check == "curves" and run_dir is not None:
            from trainlab.diagnosis.curves import check_curves, load_records, plot_curves

            records = load_records(run_dir)
            plot_curves(records, out / "curves.png")
            add(check_curves(records, figure="curves.png"))
            add(_monitor_findings(run_dir))
    from trainlab.diagnosis.report import write_report

    write_report(findings, out, f"trainlab doctor: recipe {recipe.name!r}", recipe.to_yaml())
    return findings
