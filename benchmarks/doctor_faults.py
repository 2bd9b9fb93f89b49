"""The doctor against planted faults, each beside a healthy twin that differs in the fault alone.

    python benchmarks/doctor_faults.py [--json] [--only NAME ...]

A fault is *named* when one of the doctor's root findings (the failures and warnings no other
finding explains: ``trainlab.diagnosis.story.root_findings``) blames the planted cause; a twin
is a *false alarm* when any of its findings warns or fails. Every check runs but the curves
(they read a finished run). The faults are the lectures' symptoms (lecture 002's sanity checks,
lecture 000's init experiments, lecture 004's data checks), planted on the default digits recipe
or on npz files made from the digits here; models with a planted fault are in
``fault_models.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import trainlab
from trainlab.data.datasets import _digits_arrays
from trainlab.diagnosis.doctor import CHECKS
from trainlab.diagnosis.findings import Finding
from trainlab.diagnosis.story import root_findings

CHECKS_RUN = tuple(c for c in CHECKS if c != "curves")
QUIET = ["training.progress=false"]
MLP = ["model.name=mlp", "model.widths=[128, 128]"]
USER = "model.init=keep"


@dataclass(frozen=True)
class Fault:
    """A planted fault: the recipe (overrides, optionally an npz made by ``data``), the causes
    that name it, and the twin's overrides (the same recipe without the fault)."""

    name: str
    symptom: str
    overrides: list[str]
    causes: tuple[str, ...]
    twin: list[str]
    data: str | None = None  # a key of DATA: the npz file both fault and twin train on
    twin_data: str | None = None
    trained: bool = False  # build the recipe past the new-run refusals (issue 17's rule)
    extra: dict = field(default_factory=dict)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    images, target = _digits_arrays()
    return images.astype(np.float32)[:, None], target.astype(int)


def _write(path: Path, x: np.ndarray, y: np.ndarray, **more: np.ndarray) -> Path:
    np.savez(path, x=x, y=y, **more)
    return path


def make_data(root: Path) -> dict[str, Path]:
    """The npz files the faults and twins train on, from the digits (seeded)."""
    x, y = _digits()
    rng = np.random.default_rng(0)
    flat = x.reshape(len(x), -1)
    flat = flat[:, flat.std(0) > 0]  # 3 pixels are 0 in every digit: the twins have none
    keep = np.flatnonzero(y != 0)
    few = np.flatnonzero(y == 0)[:12]  # class 0: 12 examples against ~180 of the others
    imbalanced = np.sort(np.concatenate([keep, few]))
    scaled = flat.copy()
    scaled[:, ::2] *= 1000.0  # half the features 1000x the other half
    constant = np.concatenate([flat, np.full((len(flat), 8), 3.0, np.float32)], 1)
    order = rng.permutation(len(x))
    train, test = order[:1400], order[1400:]
    leaky_test = np.concatenate([test[:200], train[:197]])  # half the test set is training data
    return {
        "digits": _write(root / "digits.npz", x, y),
        "shuffled": _write(root / "shuffled.npz", x, rng.permutation(y)),
        "imbalanced": _write(root / "imbalanced.npz", x[imbalanced], y[imbalanced]),
        "scaled": _write(root / "scaled.npz", scaled, y),
        "flat": _write(root / "flat.npz", flat, y),
        "constant": _write(root / "constant.npz", constant, y),
        "split": _write(root / "split.npz", x[train], y[train], x_test=x[test], y_test=y[test]),
        "leak": _write(
            root / "leak.npz", x[train], y[train], x_test=x[leaky_test], y_test=y[leaky_test]
        ),  # fmt: skip
    }


FAULTS = [
    Fault("lr-too-high", "loss explodes / update ratio >> 1e-3", ["optimizer.lr=1"],
          ("lr.high",), []),
    Fault("lr-too-low", "loss does not go down", ["optimizer.lr=1e-6"], ("lr.low",), []),
    Fault("zero-init", "symmetric units", ["model.init=zeros"], ("init.symmetric",), []),
    Fault("tanh-small-init", "activations collapse with depth (lecture 000)",
          [*MLP, "model.widths=[256, 256, 256, 256, 256, 256]", "model.activation=tanh",
           "model.norm=none", "model.init={name: normal, std: 0.01}"],
          ("init.scale", "gradients"),
          [*MLP, "model.widths=[256, 256, 256, 256, 256, 256]", "model.activation=tanh",
           "model.norm=none", "model.init=xavier_normal"]),
    Fault("sigmoid-big-init", "saturated sigmoid units",
          [*MLP, "model.activation=sigmoid", "model.norm=none",
           "model.init={name: normal, std: 1.0}"],
          ("units.saturated", "init.scale", "gradients"),
          [*MLP, "model.activation=sigmoid", "model.norm=batch", "model.init=xavier_normal"]),
    Fault("dead-relu", "dead ReLUs", ["model.name=fault_models:DeadReLUMLP", USER],
          ("units.dead",), ["model.name=fault_models:HealthyMLP", USER]),
    Fault("softmax-output", "probabilities fed to cross-entropy",
          ["model.name=fault_models:SoftmaxMLP", USER], ("model.output",),
          ["model.name=fault_models:HealthyMLP", USER]),
    Fault("biased-head", "initial loss far above ln C",
          ["model.name=fault_models:BiasedHeadMLP", USER], ("init.last_layer",),
          ["model.name=fault_models:HealthyMLP", USER]),
    Fault("too-small", "a model too small to fit the sample", [*MLP, "model.widths=[2]"],
          ("capacity",), MLP),
    Fault("shuffled-labels", "labels misaligned with the inputs", ["data.name=npz"],
          ("data.labels",), ["data.name=npz"], data="shuffled", twin_data="digits"),
    Fault("standardize-crop", "per-position statistics on shifted inputs",
          ["preprocess.name=standardize"], ("data.pipeline",), ["preprocess.name=per_channel"],
          trained=True),
    Fault("no-preprocessing", "unnormalised inputs (pixels 0..16)", ["preprocess.name=none"],
          ("data.scale",), []),
    Fault("feature-scales", "features 1000x apart, not standardised",
          ["data.name=npz", *MLP, "preprocess.name=none", "augment=[]"], ("data.scale",),
          ["data.name=npz", *MLP, "preprocess.name=standardize", "augment=[]"],
          data="scaled", twin_data="scaled"),
    Fault("imbalance", "class 0 has 12 examples, the others ~180", ["data.name=npz"],
          ("data.balance",), ["data.name=npz"], data="imbalanced", twin_data="digits"),
    Fault("test-leak", "half the test set is copies of training examples", ["data.name=npz"],
          ("data.duplicates",), ["data.name=npz"], data="leak", twin_data="split"),
    Fault("constant-features", "8 constant input features",
          ["data.name=npz", *MLP, "preprocess.name=standardize", "augment=[]"],
          ("data.inputs",), ["data.name=npz", *MLP, "preprocess.name=standardize", "augment=[]"],
          data="constant", twin_data="flat"),
    Fault("tiny-validation", "a validation split too small to judge", ["data.val_fraction=0.01"],
          ("data.split",), []),
]  # fmt: skip


def _recipe(overrides: list[str], data: Path | None, trained: bool):  # noqa: ANN202
    args = [*QUIET, *overrides] + ([f"data.path={data}"] if data is not None else [])
    if not trained:
        return trainlab.resolve_recipe(None, args)
    from trainlab.recipe import load_recipe

    return load_recipe(None, args, trained=True)


def _named(findings: list[Finding], causes: tuple[str, ...]) -> Finding | None:
    """The root finding that blames one of ``causes`` (or a finding of that name: the data
    checks' standalone findings name no cause, their check is the verdict)."""
    for f in root_findings(findings):
        if f.cause in causes or f.check in causes:
            return f
    return None


def run_fault(fault: Fault, data: dict[str, Path], root: Path) -> dict:
    out: dict = {"name": fault.name, "symptom": fault.symptom, "expected": list(fault.causes)}
    for role, overrides, key in (
        ("fault", fault.overrides, fault.data),
        ("twin", fault.twin, fault.twin_data or fault.data),
    ):
        recipe = _recipe(overrides, data[key] if key else None, fault.trained and role == "fault")
        start = time.perf_counter()
        findings = trainlab_doctor(recipe, root / f"{fault.name}-{role}")
        seconds = time.perf_counter() - start
        roots = root_findings(findings)
        out[role] = {
            "seconds": round(seconds, 1),
            "roots": [f"{f.status} {f.check} [{f.cause}]" for f in roots],
            "not_ok": [f.line() for f in findings if f.status != "ok"],
        }
        if role == "fault":
            hit = _named(findings, fault.causes)
            out["named"] = hit is not None
            out["verdict"] = hit.line() if hit else (roots[0].line() if roots else "all ok")
        else:
            out["false_alarm"] = bool(out[role]["not_ok"])
    return out


def trainlab_doctor(recipe, folder: Path) -> list[Finding]:  # noqa: ANN001
    from trainlab.diagnosis.doctor import run_doctor

    return run_doctor(recipe, folder, None, CHECKS_RUN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", nargs="*", help="fault names to run (default: all)")
    args = parser.parse_args()
    chosen = [f for f in FAULTS if not args.only or f.name in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp))
        for fault in chosen:
            rows.append(run_fault(fault, data, Path(tmp)))
            r = rows[-1]
            print(f"{r['name']:<18} named={r['named']!s:<5} false_alarm={r['false_alarm']!s:<5} "
                  f"{r['verdict'][:110]}", file=sys.stderr, flush=True)  # fmt: skip
            if r["false_alarm"]:
                print("    twin: " + " | ".join(r["twin"]["not_ok"])[:400], file=sys.stderr)
    named = sum(r["named"] for r in rows)
    alarms = sum(r["false_alarm"] for r in rows)
    summary = {"faults": len(rows), "named": named, "false_alarms": alarms, "rows": rows}
    print(f"named {named} of {len(rows)} planted faults; {alarms} false alarms on the twins",
          file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
