"""The lr range test against a short grid of real training runs: how close does it land?

    python benchmarks/lr_finder.py [--json] [--recipe digits mnist1d] [--seeds 0]
    python benchmarks/lr_finder.py --keep-schedule     # grid runs use the recipe's schedule

For each recipe: train at constant lrs on a half-decade grid (1e-4 .. 1e-1; the recipe's
optimiser, weight decay and epochs as set below) and take the lr with the best test accuracy;
run :func:`lr_range_test` (3 seeds, 100 steps, default range) and train once at its suggestion
and once at the lecture's 100-iteration lr. Prints the suggestion, the grid's best lr, their
distance in decades, and the accuracies; the other candidates the sweep reads off (the lr of
the minimum loss, min/10 unclipped, the steepest point) are printed with their distances too.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import trainlab
from trainlab.diagnosis.lr_finder import lr_range_test
from trainlab.recipe import DEFAULT_RECIPE

# small enough for a few CPU minutes in all (MNIST-1D with half the recipe's channels)
SETTINGS = {
    "digits": ["training.epochs=10"],
    "mnist1d": ["training.epochs=10", "model.channels=[16,32,64]"],
}
GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def train_acc(recipe: str, lr: float, seeds: list[int], overrides: list[str]) -> float:
    """Mean test accuracy of runs at ``lr`` (one run folder per seed, in a temporary dir)."""
    path = DEFAULT_RECIPE.parent / f"{recipe}.yaml"
    accs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            summary = trainlab.train(
                path,
                [*overrides, f"seed={seed}", f"optimizer.lr={lr}", "training.progress=false"],
                out=Path(tmp) / f"{seed}",
                progress=False,
            ).summary
            accs.append(summary["test_acc"])
    return statistics.mean(accs)


def decades(a: float | None, b: float) -> float | None:
    return None if a is None else round(math.log10(a / b), 2)


def run(recipe: str, seeds: list[int], keep_schedule: bool) -> dict:
    overrides = list(SETTINGS.get(recipe, []))
    if not keep_schedule:
        overrides += ["schedule={name: constant}"]
    tick = time.perf_counter()
    grid = {lr: train_acc(recipe, lr, seeds, overrides) for lr in GRID}
    grid_s = time.perf_counter() - tick
    best_lr = max(grid, key=grid.__getitem__)
    resolved = trainlab.resolve_recipe(DEFAULT_RECIPE.parent / f"{recipe}.yaml", overrides)
    tick = time.perf_counter()
    sweep = lr_range_test(resolved)
    sweep_s = time.perf_counter() - tick
    sugg = sweep.recipe_lr
    acc_sugg = train_acc(recipe, sugg, seeds, overrides) if sugg else None
    rule = sweep.rule_lr / sweep.lr_scale if sweep.rule_lr else None
    acc_rule = (grid.get(rule) or train_acc(recipe, rule, seeds, overrides)) if rule else None
    per_seed = [s for s in sweep.seeds if s.min_lr is not None]
    min_lr = statistics.median(s.min_lr for s in per_seed) if per_seed else None
    steep = [s.steepest_lr for s in sweep.seeds if s.steepest_lr is not None]
    return {
        "recipe": recipe,
        "overrides": overrides,
        "seeds": seeds,
        "shape": sweep.shape,
        "suggested_lr": sugg,
        "spread": list(sweep.spread) if sweep.spread else None,
        "steepest_range": list(sweep.steepest_range) if sweep.steepest_range else None,
        "grid": {f"{lr:g}": acc for lr, acc in grid.items()},
        "grid_best_lr": best_lr,
        "grid_best_acc": grid[best_lr],
        "decades_from_best": decades(sugg, best_lr),
        "acc_at_suggestion": acc_sugg,
        "rule_lr": rule,
        "acc_at_rule_lr": acc_rule,
        "rule_decades_from_best": decades(rule, best_lr),
        "other_candidates_decades_from_best": {
            "min_loss_lr": decades(min_lr, best_lr),
            "min_loss_lr_over_10": decades(min_lr / 10 if min_lr else None, best_lr),
            "steepest_point": decades(statistics.median(steep) if steep else None, best_lr),
        },
        "sweep_s": round(sweep_s, 1),
        "grid_s": round(grid_s, 1),
        "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per grid lr")
    parser.add_argument("--recipe", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--keep-schedule", action="store_true", help="grid uses recipe schedule")
    args = parser.parse_args()
    results = []
    for name in args.recipe:
        r = run(name, args.seeds, args.keep_schedule)
        results.append(r)
        grid = "  ".join(f"{lr}:{100 * acc:.1f}" for lr, acc in r["grid"].items())

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.1f}%"

        print(
            f"{name:>8}: suggested lr {r['suggested_lr']:.2g} ({r['shape']}), grid best "
            f"{r['grid_best_lr']:g} -> {r['decades_from_best']:+.2f} decades; test acc "
            f"{pct(r['acc_at_suggestion'])} at the suggestion vs {pct(r['grid_best_acc'])} "
            f"best grid; 100-iteration lr {r['rule_lr']} ({pct(r['acc_at_rule_lr'])}); "
            f"sweep {r['sweep_s']} s, grid {r['grid_s']} s\n          grid: {grid}\n"
            f"          other candidates (decades from best): "
            f"{r['other_candidates_decades_from_best']}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
