"""How long the doctor takes against training the same recipe, side by side in one process.

    python benchmarks/doctor.py [--json] [--recipe digits mnist1d] [--repeats 2]

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
            last = [time.perf_counter()]

            def tick(finding) -> None:
                now = time.perf_counter()
                stamps[finding.check] = round(now - last[0], 2)
                last[0] = now

            trainlab.doctor(path, quiet, out=root / f"doc{next(runs)}", checks=DOCTOR_CHECKS,
                            on_finding=tick)  # fmt: skip

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--recipe", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
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
