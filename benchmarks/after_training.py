"""After training, on MNIST-1D and digits, 3 seeds each (issue 20): single model vs EMA vs
5-model ensemble vs snapshot ensemble vs TTA vs ensemble+TTA; ECE before/after temperature
scaling and with MC dropout; fine-tuning vs training from scratch; a distilled student vs the
same student trained alone.

    python benchmarks/after_training.py [--recipe mnist1d digits] [--seeds 3] [--members 5]
        [--parts models ema snapshots mc transfer distill wide] [--out /tmp/after] [--json]

Run folders go under ``--out`` and a finished one (its summary.json) is reused, so an
interrupted benchmark continues where it stopped. Every figure is test accuracy (%) as mean
+- sample std over the seeds; seed s of the ensemble is the ensemble of runs with seeds
5s..5s+4, and "single" is the first of them (the one the ensemble was built around).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import trainlab
from trainlab.evaluation.ensemble import ensemble
from trainlab.recipe import DEFAULT_RECIPE

TTA = {"mnist1d": "shifts", "digits": "translate"}
QUIET = ["training.progress=false"]


def trained(out: Path, recipe: str, overrides: list[str]) -> Path:
    """The run folder ``out`` of ``recipe`` with ``overrides``, trained unless already done."""
    if not (out / "summary.json").is_file():
        path = DEFAULT_RECIPE.parent / f"{recipe}.yaml"
        trainlab.train(path, [*QUIET, *overrides], out=out, progress=False, quiet=True)
        print(f"  trained {out}", file=sys.stderr, flush=True)
    return out


def summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def stat(values: list[float]) -> dict[str, Any]:
    """mean and sample std in percent, with the values."""
    pct = [100 * v for v in values]
    std = statistics.stdev(pct) if len(pct) > 1 else 0.0
    return {"mean": statistics.mean(pct), "std": std, "values": [round(v, 2) for v in pct]}


def models_part(recipe: str, root: Path, seeds: int, members: int) -> dict[str, Any]:
    """Single model, 5-model ensemble, TTA, ensemble + TTA; calibration of the single model."""
    tta = TTA[recipe]
    rows: dict[str, list[float]] = {k: [] for k in ("single", "tta", "ensemble", "ensemble_tta")}
    calib: dict[str, list[float]] = {k: [] for k in ("ece", "ece_scaled", "nll", "nll_scaled")}
    walls: list[float] = []
    for s in range(seeds):
        group = [
            trained(root / recipe / f"seed-{members * s + k}", recipe, [f"seed={members * s + k}"])
            for k in range(members)
        ]
        walls += [summary(run)["wall_s"] for run in group]
        evaluated = trainlab.evaluate(group[0], tta=tta, plot=False)
        rows["single"].append(evaluated["test_acc"])
        rows["tta"].append(evaluated["tta"]["levels"][tta]["test_acc"])
        rows["ensemble"].append(ensemble(group)["ensemble"]["test_acc"])
        rows["ensemble_tta"].append(ensemble(group, tta=tta)["ensemble"]["test_acc"])
        report = evaluated["calibration"]
        calib["ece"].append(report["test"]["T=1"]["ece"])
        calib["ece_scaled"].append(report["test"]["scaled"]["ece"])
        calib["nll"].append(report["test"]["T=1"]["nll"])
        calib["nll_scaled"].append(report["test"]["scaled"]["nll"])
    out: dict[str, Any] = {k: stat(v) for k, v in rows.items()}
    out["calibration"] = {k: stat(v) for k, v in calib.items()}
    out["wall_s_per_model"] = statistics.mean(walls)
    out["tta_policy"] = tta
    return out


def ema_part(recipe: str, root: Path, seeds: int, members: int, decay: float) -> dict[str, Any]:
    """The same recipe and seeds as the single models, with an EMA of the weights."""
    accs = []
    for s in range(seeds):
        seed = members * s
        run = trained(
            root / recipe / f"ema-{seed}",
            recipe,
            [f"seed={seed}", f"training.ema={{decay: {decay}}}"],
        )
        accs.append(summary(run)["test_acc"])
    return {"ema": stat(accs), "decay": decay}


def snapshots_part(recipe: str, root: Path, seeds: int, members: int) -> dict[str, Any]:
    """One SGDR run with ``members`` cycles per seed: its final model and its snapshot ensemble
    (same epochs as the single model)."""
    epochs = trainlab.resolve_recipe(DEFAULT_RECIPE.parent / f"{recipe}.yaml", []).training.epochs
    period = epochs / members
    final, snap = [], []
    for s in range(seeds):
        seed = members * s
        overrides = [
            f"seed={seed}", "schedule.name=sgdr", f"schedule.period_epochs={period}",
            "schedule.warmup_epochs=0", "training.snapshots=true",
        ]  # fmt: skip
        run = trained(root / recipe / f"sgdr-{seed}", recipe, overrides)
        final.append(summary(run)["test_acc"])
        snap.append(ensemble([run], snapshots=True)["ensemble"]["test_acc"])
    return {"sgdr_final": stat(final), "snapshot_ensemble": stat(snap), "cycles": members}


def mc_part(recipe: str, root: Path, seeds: int, passes: int, dropout: float) -> dict[str, Any]:
    """A dropout variant of the recipe: ECE and accuracy plain vs MC dropout (``passes``)."""
    rows: dict[str, list[float]] = {k: [] for k in ("acc", "acc_mc", "ece", "ece_mc")}
    for seed in range(seeds):
        run = trained(
            root / recipe / f"dropout-{seed}", recipe, [f"seed={seed}", f"model.dropout={dropout}"]
        )
        levels = trainlab.evaluate(run, mc_dropout=passes, plot=False)["tta"]["levels"]
        mc = levels[f"mc_dropout{passes}"]
        rows["acc"].append(levels["identity"]["test_acc"])
        rows["acc_mc"].append(mc["test_acc"])
        rows["ece"].append(levels["identity"]["test_ece"])
        rows["ece_mc"].append(mc["test_ece"])
    return {**{k: stat(v) for k, v in rows.items()}, "dropout": dropout, "passes": passes}


def transfer_part(recipe: str, root: Path, seeds: int, epochs: int) -> dict[str, Any]:
    """Pretrain on classes 0-4, then 5-9 for ``epochs`` epochs: fine-tuned vs from scratch."""
    first, second = "[0, 1, 2, 3, 4]", "[5, 6, 7, 8, 9]"
    scratch, tuned = [], []
    for seed in range(seeds):
        base = [f"seed={seed}", f"training.epochs={epochs}"]
        pre = trained(
            root / recipe / f"pre04-{seed}", recipe, [f"seed={seed}", f"data.keep_classes={first}"]
        )
        new = [*base, f"data.keep_classes={second}"]
        scratch.append(
            summary(trained(root / recipe / f"scratch59-{seed}", recipe, new))["test_acc"]
        )
        fine = trained(root / recipe / f"fine59-{seed}", recipe, [*new, f"model.from={pre}"])
        tuned.append(summary(fine)["test_acc"])
    return {"scratch": stat(scratch), "fine_tuned": stat(tuned), "epochs": epochs}


def distill_part(
    recipe: str, root: Path, seeds: int, members: int, student: list[str]
) -> dict[str, Any]:
    """A smaller student alone vs distilled from the first 5-model ensemble (the teacher)."""
    teacher = [str(root / recipe / f"seed-{k}") for k in range(members)]
    for k, run in enumerate(teacher):
        trained(Path(run), recipe, [f"seed={k}"])
    alone, taught = [], []
    for seed in range(seeds):
        base = [f"seed={100 + seed}", *student]
        alone.append(summary(trained(root / recipe / f"student-{seed}", recipe, base))["test_acc"])
        spec = f"distill={{teacher: [{', '.join(teacher)}], temperature: 4.0, alpha: 0.9}}"
        run = trained(root / recipe / f"distilled-{seed}", recipe, [*base, spec])
        taught.append(summary(run)["test_acc"])
    teacher_acc = ensemble(teacher)["ensemble"]["test_acc"]
    return {
        "student_alone": stat(alone), "distilled": stat(taught),
        "teacher_ensemble": 100 * teacher_acc, "student": student,
    }  # fmt: skip


def wide_part(recipe: str, root: Path, seeds: int, members: int) -> dict[str, Any]:
    """All ``seeds * members`` single runs as one ensemble, without and with TTA (one figure:
    how far more members go)."""
    runs = [root / recipe / f"seed-{k}" for k in range(seeds * members)]
    for k, run in enumerate(runs):
        trained(run, recipe, [f"seed={k}"])
    tta = TTA[recipe]
    return {
        "members": len(runs),
        "ensemble": 100 * ensemble(runs)["ensemble"]["test_acc"],
        "ensemble_tta": 100 * ensemble(runs, tta=tta)["ensemble"]["test_acc"],
    }


STUDENTS = {
    "mnist1d": ["model.channels=[8, 16, 32]"],
    "digits": ["model.channels=[8, 16]"],
}


def run_part(part: str, recipe: str, args: argparse.Namespace) -> dict[str, Any]:
    """One part of the benchmark on one recipe."""
    out, seeds, members = args.out, args.seeds, args.members
    if part == "models":
        return models_part(recipe, out, seeds, members)
    if part == "ema":
        return ema_part(recipe, out, seeds, members, args.ema_decay)
    if part == "snapshots":
        return snapshots_part(recipe, out, seeds, members)
    if part == "mc":
        return mc_part(recipe, out, seeds, 20, 0.2)
    if part == "transfer":
        return transfer_part(recipe, out, seeds, args.transfer_epochs)
    if part == "wide":
        return wide_part(recipe, out, seeds, members)
    if part == "distill":
        return distill_part(recipe, out, seeds, members, STUDENTS[recipe])
    raise SystemExit(
        f"--parts {part!r}: expected models, ema, snapshots, mc, transfer, distill, wide"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", nargs="+", default=["mnist1d", "digits"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["models", "ema", "snapshots", "mc", "transfer", "distill", "wide"],
    )
    parser.add_argument("--ema-decay", type=float, default=0.998)
    parser.add_argument("--transfer-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/after-training"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for recipe in args.recipe:
        results[recipe] = {}
        for part in args.parts:
            results[recipe][part] = run_part(part, recipe, args)
            print(f"{recipe} {part}: {json.dumps(results[recipe][part])}", file=sys.stderr)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
