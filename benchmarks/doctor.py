"""How long the doctor takes against training the same recipe, side by side in one process;
and (``--variants``) its verdicts on the shipped recipes and their usual variants over seeds.

    python benchmarks/doctor.py [--json] [--recipe digits mnist1d] [--repeats 2]
    python benchmarks/doctor.py --variants [--seeds 0 1 2] [--runs] [--json]

``--variants``: every check but the curves on each recipe x variant x seed (``--runs``: train
each one and read its curves too), counting the optimiser steps; any warn or fail is printed
(issue 18: the shipped recipes and their usual variants must report none).

For each recipe: ``trainlab.train`` (the whole run, evaluation included) and ``trainlab.doctor``
(every check but the curves, which read a finished run), alternating, after one warm-up of each
so that imports and dataset caches are paid before timing. Reported: the median wall time of
each, their ratio, the time of each check (from the doctor's own timing of one run), and the
optimiser steps each takes (counted with torch's global optimiser-step hook): the doctor's
steps are a fixed budget, training's grow with the epochs, so their ratio is the floor of the
time ratio on any machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import trainlab
from trainlab.diagnosis.doctor import CHECKS
from trainlab.recipe import DEFAULT_RECIPE

DOCTOR_CHECKS = tuple(c for c in CHECKS if c != "curves")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _count_steps(fn) -> int:
    """Optimiser steps taken by ``fn()`` (every optimiser, every model copy)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    count = [0]

    def hook(*_args) -> None:
        count[0] += 1

    handle = register_optimizer_step_post_hook(hook)
    try:
        fn()
    finally:
        handle.remove()
    return count[0]


def measure(recipe: str, repeats: int) -> dict:
    path = DEFAULT_RECIPE.parent / f"{recipe}.yaml"
    quiet = ["training.progress=false"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = iter(range(10_000))

        def train() -> None:
            trainlab.train(path, quiet, out=root / f"run{next(runs)}", progress=False)

        stamps: dict[str, float] = {}

        def doctor() -> None:
            last = [time.perf_counter(), ""]

            def tick(name: str) -> None:
                now = time.perf_counter()
                if last[1]:
                    stamps[last[1]] = round(now - last[0], 2)
                last[:] = [now, name]

            trainlab.doctor(path, quiet, out=root / f"doc{next(runs)}", checks=DOCTOR_CHECKS,
                            on_check=tick)  # fmt: skip
            tick("")

        # warm-up (imports, dataset generation and caches), counting the steps of each
        train_steps, doctor_steps = _count_steps(train), _count_steps(doctor)
        train_s, doctor_s = [], []
        for i in range(repeats):
            order = (train, doctor) if i % 2 == 0 else (doctor, train)
            for fn in order:
                (train_s if fn is train else doctor_s).append(_time(fn))
    t, d = statistics.median(train_s), statistics.median(doctor_s)
    return {
        "recipe": recipe,
        "train_s": round(t, 2),
        "doctor_s": round(d, 2),
        "ratio": round(d / t, 3),
        "train_steps": train_steps,
        "doctor_steps": doctor_steps,
        "step_ratio": round(doctor_steps / train_steps, 3),
        "doctor_check_s": stamps,
        "threads": torch.get_num_threads(),
    }


#: the usual variants of a shipped recipe (issue 18, item 4); mnist1d already has mixup
VARIANTS = {
    "as shipped": [],
    "mixup": ["augment=[{name: mixup, alpha: 0.2}]"],
    "cutmix": ["augment=[{name: cutmix, alpha: 1.0}]"],
    "label smoothing 0.1": ["loss.label_smoothing=0.1"],
    "group norm": ["model.norm=group"],
    "SGD+momentum": ["optimizer={name: momentum, lr: 0.05, rho: 0.9}"],
    "dropout 0.2": ["model.dropout=0.2"],
}


def _diagnose(path: Path, args: list[str], run: Path | None, out: Path) -> tuple[dict, int]:
    """The doctor's result on one variant (on the run's own recipe with ``run``) and the
    optimiser steps it took."""
    box: dict = {}
    checks = DOCTOR_CHECKS + (("curves",) if run else ())

    def doctor() -> None:
        given = (None, None) if run else (path, args)
        box["r"] = trainlab.doctor(*given, out=out, run=run, checks=checks)

    steps = _count_steps(doctor)
    return box["r"], steps


def variants(recipes: list[str], seeds: list[int], with_runs: bool) -> list[dict]:
    """The doctor on each recipe x variant x seed: worst status, the non-ok lines, steps."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in recipes:
            path = DEFAULT_RECIPE.parent / f"{recipe}.yaml"
            for variant, overrides in VARIANTS.items():
                for seed in seeds:
                    args = ["training.progress=false", f"seed={seed}", *overrides]
                    tag = f"{recipe}-{len(rows)}"
                    run = Path(tmp) / f"run-{tag}" if with_runs else None
                    if run is not None:
                        trainlab.train(path, args, out=run, progress=False)
                    result, steps = _diagnose(path, args, run, Path(tmp) / tag)
                    bad = [
                        f"{f['status']} {f['check']}: {f['summary'][:90]}"
                        for f in result["findings"]
                        if f["status"] != "ok"
                    ]
                    row = {"recipe": recipe, "variant": variant, "seed": seed, "steps": steps}
                    rows.append({**row, "status": result["status"], "not_ok": bad})
                    print(f"{recipe:>8} {variant:<20} seed {seed}: {result['status']:<4} "
                          f"{steps} steps {bad}", file=sys.stderr, flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--recipe", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", action="store_true", help="--variants: train and read curves")
    args = parser.parse_args()
    if args.variants:
        rows = variants(args.recipe, args.seeds, args.runs)
        bad = [r for r in rows if r["status"] != "ok"]
        print(f"{len(rows) - len(bad)} of {len(rows)} all ok; most steps "
              f"{max(r['steps'] for r in rows)}", file=sys.stderr)  # fmt: skip
        if args.json:
            print(json.dumps({"variants": rows}))
        return
    results = [measure(name, args.repeats) for name in args.recipe]
    for r in results:
        print(
            f"{r['recipe']:>8}: train {r['train_s']:.1f} s, doctor {r['doctor_s']:.1f} s, "
            f"doctor/train {r['ratio']:.2f}; optimiser steps {r['doctor_steps']} vs "
            f"{r['train_steps']} ({r['step_ratio']:.2f}); per finding (s): {r['doctor_check_s']}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
