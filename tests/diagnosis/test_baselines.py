"""Lecture 004 step 2's dumb baselines: majority class and a closed-form linear model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import trainlab
from trainlab.data.datasets import Splits
from trainlab.diagnosis.baselines import _check, check_baselines, network_accuracy
from trainlab.diagnosis.checks import Context
from trainlab.engine.build import build


def identity(x):
    return x


def blob_splits(counts: list[int], val: int, seed: int = 0, d: int = 6) -> Splits:
    """Linearly separable Gaussian blobs: train with ``counts`` per class, ``val`` per class in
    validation and test."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(counts), d))

    def draw(per_class: list[int]) -> tuple[np.ndarray, np.ndarray]:
        y = np.concatenate([np.full(c, k) for k, c in enumerate(per_class)]).astype(np.int64)
        return (centres[y] + rng.normal(0, 1, (len(y), d))).astype(np.float32), y

    xt, yt = draw(counts)
    xv, yv = draw([val] * len(counts))
    xs, ys = draw([val] * len(counts))
    return Splits(xt, yt, xv, yv, xs, ys, [str(k) for k in range(len(counts))], "blobs")


@pytest.fixture(scope="module")
def digits():
    return build(trainlab.resolve_recipe(None, []))


def test_digits_baselines_are_reference_points_and_cheap(digits):
    start = time.perf_counter()
    finding = check_baselines(digits.splits, digits.preprocess)
    elapsed = time.perf_counter() - start
    assert finding.status == "ok", finding.line()
    assert 0.05 < finding.values["val_majority"] < 0.2  # ten balanced classes
    assert finding.values["val_linear"] > 0.8  # digits are nearly linearly separable
    assert "majority class" in finding.summary and "linear" in finding.summary
    assert elapsed < 5.0  # milliseconds alone; generous for a loaded test machine


def test_majority_baseline_is_the_share_of_the_big_class():
    s = blob_splits([300, 100, 100], val=40)
    s.y_val[:60] = 0  # validation: 60 of 120 in class 0
    finding = check_baselines(s, identity)
    assert finding.values["majority_class"] == "0"
    assert finding.values["val_majority"] == pytest.approx(0.5)


def _run(tmp_path: Path, val_acc: float, test_acc: float) -> Path:
    run = tmp_path / f"run-{val_acc}"
    run.mkdir()
    summary = {"test_acc": test_acc, "val": {"final": {"val_acc": val_acc}, "best": {}}}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_a_network_behind_the_linear_model_warns_and_one_ahead_is_ok(tmp_path: Path):
    s = blob_splits([200, 200, 200], val=40)  # linear: ~100%
    behind = check_baselines(s, identity, network_accuracy(_run(tmp_path, 0.6, 0.55)))
    assert behind.status == "warn", behind.line()
    assert "does not beat a linear model" in behind.summary and "60.0%" in behind.summary
    ahead = check_baselines(s, identity, {"val": 1.0, "test": 1.0})
    assert ahead.status == "ok", ahead.line()
    assert ahead.values["network"] == {"val": 1.0, "test": 1.0}


def test_the_adapter_reads_the_run_folder(digits, tmp_path: Path):
    def ctx(run: Path | None) -> Context:
        return Context(digits.recipe, digits, tmp_path, run, (0,))

    assert _check(ctx(None)).status == "ok"
    assert _check(ctx(_run(tmp_path, 0.3, 0.3))).status == "warn"
    assert _check(ctx(_run(tmp_path, 0.99, 0.98))).status == "ok"


def test_a_running_run_is_read_from_its_metrics(tmp_path: Path):
    rows = [{"step": 10, "loss": 1.0}, {"epoch": 1, "val_acc": 0.4}, {"epoch": 2, "val_acc": 0.7}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert network_accuracy(tmp_path) == {"val": 0.7}


def test_a_validation_split_too_small_is_said_so_not_judged():
    s = blob_splits([200, 200], val=5)  # 10 validation examples
    finding = check_baselines(s, identity, {"val": 0.1})
    assert finding.status == "ok" and "too small to judge" in finding.summary
