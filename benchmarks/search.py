"""Search benchmarks on MNIST-1D (issue 19), each side by side in one run, validation only.

    python benchmarks/search.py [--parts a b c d] [--out DIR] [--json]

(a) random search with a pruner against the same random trials unpruned: the trial-seeded
    random sampler draws the same configurations in both studies, so the only difference is
    the pruning. Reported: best validation accuracy and epochs trained, for the median pruner,
    ASHA and ``--prune-sick`` (the doctor's monitors), each on the same trial budget.
(b) random search against a grid of the same size over the same ranges, 3 search seeds for
    random (the grid has no seed): mean best validation accuracy. The space has two keys that
    matter (lr, weight decay) and one that matters little (label smoothing), Bergstra and
    Bengio's case.
(c) coarse-to-fine (many 2-epoch trials, then a few longer ones in the narrowed ranges) against
    one stage of the same total epochs at the longer length, 3 search seeds each.
(e) ``--prune-sick`` where trials do fall sick: the learning rate ranges up to 10 (AdamW), where
    runs diverge or their units die, against the median pruner and no pruning, same trials.
(d) the recipe the best coarse-to-fine search found (by validation), at the shipped recipe's
    full length, trained on 3 seeds, against the shipped mnist1d recipe on the same 3 seeds:
    test accuracy (reported, never used to choose).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from trainlab.api import search as run_search
from trainlab.api import train_seeds

RECIPE = "mnist1d"
SPACE = """
optimizer.lr: loguniform(1e-4, 1e-1)
optimizer.weight_decay: loguniform(1e-4, 1.0)
"""
SPACE_B = SPACE + "loss.label_smoothing: uniform(0.0, 0.1)\n"
SPACE_E = "optimizer.lr: loguniform(1e-4, 10.0)\n"


def _space(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    last = result["stages"][-1]
    trials = [t for s in result["stages"] for t in s["trials_run"]]
    states = [t["state"] for t in trials]
    best = result["best"]
    return {
        "best_val_acc": None if best is None else best["value"],
        "best_params": None if best is None else best["params"],
        "epochs": sum(s["epochs_trained"] for s in result["stages"]),
        "trials": len(trials),
        "pruned": states.count("pruned"),
        "failed": states.count("failed"),
        "last_stage_trials": len(last["trials_run"]),
    }


def _search(folder: Path, name: str, space: Path, **kwargs: Any) -> dict[str, Any]:
    start = time.perf_counter()
    result = run_search(RECIPE, space, out=folder / name, **kwargs)
    out = _summary(result)
    out["wall_s"] = round(time.perf_counter() - start, 1)
    print(f"  {name}: {json.dumps(out)}", flush=True)
    return out


def part_a(folder: Path, trials: int, epochs: int) -> dict[str, Any]:
    space = _space(folder, "a", SPACE)
    stages = f"{trials}x{epochs}"
    rows = {"unpruned": _search(folder, "a-none", space, stages=stages)}
    for pruner in ("median", "asha"):
        rows[pruner] = _search(folder, f"a-{pruner}", space, stages=stages, pruner=pruner)
    rows["prune_sick"] = _search(folder, "a-sick", space, stages=stages, prune_sick=True)
    rows["median+sick"] = _search(
        folder, "a-median-sick", space, stages=stages, pruner="median", prune_sick=True
    )
    return rows


def part_e(folder: Path, trials: int, epochs: int) -> dict[str, Any]:
    space = _space(folder, "e", SPACE_E)
    stages = f"{trials}x{epochs}"
    return {
        "unpruned": _search(folder, "e-none", space, stages=stages),
        "median": _search(folder, "e-median", space, stages=stages, pruner="median"),
        "prune_sick": _search(folder, "e-sick", space, stages=stages, prune_sick=True),
        "median+sick": _search(
            folder, "e-median-sick", space, stages=stages, pruner="median", prune_sick=True
        ),
    }


def part_b(folder: Path, trials: int, epochs: int, seeds: list[int]) -> dict[str, Any]:
    space = _space(folder, "b", SPACE_B)
    stages = f"{trials}x{epochs}"
    grid = _search(folder, "b-grid", space, stages=stages, sampler="grid")
    randoms = [
        _search(folder, f"b-random-{s}", space, stages=f"{grid['trials']}x{epochs}", seed=s)
        for s in seeds
    ]
    values = [r["best_val_acc"] for r in randoms]
    return {"grid": grid, "random": randoms, "random_mean": statistics.mean(values)}


def part_c(folder: Path, coarse: str, one: str, seeds: list[int]) -> dict[str, Any]:
    space = _space(folder, "c", SPACE)
    rows: dict[str, Any] = {"coarse_to_fine": [], "one_stage": []}
    for s in seeds:
        rows["coarse_to_fine"].append(_search(folder, f"c-c2f-{s}", space, stages=coarse, seed=s))
        rows["one_stage"].append(_search(folder, f"c-one-{s}", space, stages=one, seed=s))
    for name in ("coarse_to_fine", "one_stage"):
        rows[f"{name}_mean"] = statistics.mean(r["best_val_acc"] for r in rows[name])
    return rows


def part_d(folder: Path, params: dict[str, Any], seeds: int) -> dict[str, Any]:
    found = train_seeds(RECIPE, params, seeds, out=folder / "d-found", quiet=True)
    shipped = train_seeds(RECIPE, None, seeds, out=folder / "d-shipped", quiet=True)
    row = {}
    for name, r in (("found", found), ("shipped", shipped)):
        row[name] = {k: (r["mean"][k], r["std"][k]) for k in ("val_acc", "test_acc")}
        print(f"  d-{name}: {json.dumps(row[name])}", flush=True)
    row["params"] = params
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c", "d", "e"])
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--a-size", default="12x6", help="part (a)'s TRIALSxEPOCHS")
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="bench-search-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"folder": str(folder)}
    if "a" in args.parts:
        trials, epochs = (int(n) for n in args.a_size.split("x"))
        print(f"(a) pruning, {trials} random trials x {epochs} epochs", flush=True)
        results["a"] = part_a(folder, trials, epochs)
    if "b" in args.parts:
        print("(b) random vs grid, 8 trials x 4 epochs", flush=True)
        results["b"] = part_b(folder, 8, 4, [0, 1, 2])
    if "c" in args.parts or "d" in args.parts:
        print("(c) coarse-to-fine 12x2:3x8 vs one stage 6x8", flush=True)
        results["c"] = part_c(folder, "12x2:3x8", "6x8", [0, 1, 2])
    if "d" in args.parts:
        print("(d) the found recipe at full length vs the shipped recipe, 3 seeds", flush=True)
        found = max(results["c"]["coarse_to_fine"], key=lambda r: r["best_val_acc"])
        results["d"] = part_d(folder, found["best_params"], 3)
    if "e" in args.parts:
        print("(e) prune-sick where trials fall sick, 12 random trials x 6 epochs", flush=True)
        results["e"] = part_e(folder, 12, 6)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
