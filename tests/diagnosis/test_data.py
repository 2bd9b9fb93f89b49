"""Check 7: class balance, input statistics, duplicates between splits, the per-class figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainlab.data.datasets import Splits, load_splits
from trainlab.diagnosis.data import check_data, plot_class_samples
from trainlab.recipe import Recipe


def splits_of(name: str, **data) -> Splits:
    return load_splits(Recipe.model_validate({"data": {"name": name, **data}}).data)


def by_check(findings) -> dict:
    return {f.check: f for f in findings}


def blobs(n: int, counts: list[int], seed: int = 0, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    x = rng.normal(0, 1, (len(y), d)).astype(np.float32) + 3.0 * y[:, None]
    return x, y


def test_digits_is_ok_everywhere():
    f = by_check(check_data(splits_of("digits"), figure="samples.png"))
    assert {k: v.status for k, v in f.items()} == {
        "data.balance": "ok",
        "data.inputs": "ok",
        "data.duplicates": "ok",
    }, [v.line() for v in f.values()]
    assert f["data.balance"].figures == ("samples.png",)
    assert sum(f["data.balance"].values["train_counts"].values()) == 1294
    assert f["data.duplicates"].values["test_in_train"] == 0  # digits has no exact copies
    assert len(f["data.inputs"].values["mean"]) == 1  # one channel


def test_imbalanced_npz_is_flagged(tmp_path: Path):
    x, y = blobs(0, [900, 100, 60])
    np.savez(tmp_path / "imb.npz", x=x, y=y)
    f = by_check(check_data(splits_of("npz", path=str(tmp_path / "imb.npz"))))
    bal = f["data.balance"]
    assert bal.status == "warn" and "imbalanced" in bal.summary
    assert bal.values["ratio"] < 0.1
    assert "'2'" in bal.summary and "'0'" in bal.summary  # names the smallest and largest


def test_test_rows_copied_from_train_are_counted(tmp_path: Path):
    x, y = blobs(0, [300, 300])
    xt, yt = blobs(0, [50, 50], seed=1)
    xt[:7], yt[:7] = x[10:17], y[10:17]  # 7 test rows copied from train
    np.savez(tmp_path / "leak.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    s = splits_of("npz", path=str(tmp_path / "leak.npz"), val_fraction=0.0)
    dup = by_check(check_data(s))["data.duplicates"]
    assert dup.status == "warn"
    assert dup.values["test_in_train"] == 7
    assert dup.values["test_in_train_fraction"] == pytest.approx(0.07)
    assert "7 of 100 test examples" in dup.summary


def test_conflicting_labels_and_bad_features_are_flagged(tmp_path: Path):
    x, y = blobs(0, [200, 200])
    x[:, 2] = 5.0  # constant feature
    x[:, 3] *= 1000.0  # a feature on a wildly different scale
    x[5], y[5] = x[300], 0  # the same input as row 300 (class 1), labelled 0
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    f = by_check(check_data(splits_of("npz", path=str(tmp_path / "bad.npz"), val_fraction=0.0)))
    inputs = f["data.inputs"]
    assert inputs.status == "warn" and inputs.values["constant"] == [2]
    assert inputs.values["scale_ratio"] > 100 and "standardi" in inputs.advice
    dup = f["data.duplicates"]
    if dup.values["within_train"]:  # both copies landed in train
        assert dup.status == "warn" and dup.values["conflicting_labels"] == 1


@pytest.mark.parametrize("name", ["digits", "mnist1d", "spiral"])
def test_class_sample_figure_is_written(name: str, tmp_path: Path):
    png = plot_class_samples(splits_of(name), tmp_path / "samples.png", per_class=6)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_class_sample_figure_for_many_features(tmp_path: Path):
    x, y = blobs(0, [100, 80, 60], d=12)
    np.savez(tmp_path / "v.npz", x=x, y=y)
    png = plot_class_samples(splits_of("npz", path=str(tmp_path / "v.npz")), tmp_path / "v.png")
    assert png.stat().st_size > 10_000
