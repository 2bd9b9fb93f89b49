"""Shipped recipes over several seeds: test accuracy and time as mean +- std (airbench's habit).

    python benchmarks/recipes.py [--json] [--seeds 0 1 2] [--recipe digits mnist1d]
    python benchmarks/recipes.py --recipe cifar10 --set data.path=/data/cifar10   # on a GPU

Each run is an ordinary run folder under a temporary directory; the figures are read back from
its summary. ``wall_s`` is the whole fit (training and evaluation), ``samples_per_s`` training only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

import trainlab
from trainlab.recipe import DEFAULT_RECIPE


def run(recipe: str, seeds: list[int], overrides: list[str]) -> dict:
    path = DEFAULT_RECIPE.parent / f"{recipe}.yaml"
    summaries = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            out = Path(tmp) / f"{recipe}-{seed}"
            summaries.append(
                trainlab.train(
                    path,
                    [f"seed={seed}", "training.progress=false", *overrides],
                    out=out,
                    progress=False,
                )
            )

    def stat(key: str) -> tuple[float, float]:
        values = [s[key] for s in summaries]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    acc, wall, speed = stat("test_acc"), stat("wall_s"), stat("samples_per_s")
    return {
        "recipe": recipe,
        "seeds": seeds,
        "test_acc_mean": acc[0],
        "test_acc_std": acc[1],
        "wall_s_mean": wall[0],
        "wall_s_std": wall[1],
        "samples_per_s_mean": speed[0],
        "test_acc": [s["test_acc"] for s in summaries],
        "device": summaries[0]["device"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every run")
    args = parser.parse_args()
    results = [run(name, args.seeds, args.set) for name in args.recipe]
    for r in results:
        print(
            f"{r['recipe']:>8}: test_acc {100 * r['test_acc_mean']:.2f} +- "
            f"{100 * r['test_acc_std']:.2f} %  "
            f"wall {r['wall_s_mean']:.1f} +- {r['wall_s_std']:.1f} s"
            f"  {r['samples_per_s_mean']:,.0f} samples/s  ({len(r['seeds'])} seeds, {r['device']})",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
