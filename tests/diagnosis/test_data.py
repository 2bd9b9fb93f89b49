"""Check 7: class balance, input statistics, duplicates between splits, the per-class figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import trainlab
from trainlab.data.datasets import Splits, load_splits
from trainlab.data.preprocess import create_preprocessor
from trainlab.diagnosis.data import (
    check_data,
    check_inputs,
    check_split,
    plot_class_samples,
    seen_from_parts,
    validation_too_small,
)
from trainlab.engine.build import build
from trainlab.recipe import Recipe, load_recipe


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
    parts = build(trainlab.resolve_recipe(None, []))
    seen = seen_from_parts(parts)
    f = by_check(check_data(parts.splits, figure="samples.png", seen=seen, data=parts.recipe.data))
    assert {k: v.status for k, v in f.items()} == {
        "data.balance": "ok",
        "data.split": "ok",
        "data.inputs": "ok",
        "data.pipeline": "ok",
        "data.duplicates": "ok",
    }, [v.line() for v in f.values()]
    assert f["data.balance"].figures == ("samples.png",)
    assert sum(f["data.balance"].values["train_counts"].values()) == 1294
    assert f["data.duplicates"].values["test_in_train"] == 0  # digits has no exact copies
    assert len(f["data.inputs"].values["mean"]) == 1  # one channel
    assert f["data.split"].values["val_examples"] == 144
    assert f["data.pipeline"].values["std_ratio"] < 1.5  # random_crop + per_channel


def test_standardize_with_random_crop_fails_the_pipeline_and_names_the_pair():
    # refused for new runs (issue 17); trained=True builds it as an old run folder would
    recipe = load_recipe(None, ["preprocess.name=standardize"], trained=True)
    parts = build(recipe)
    f = by_check(check_data(parts.splits, seen=seen_from_parts(parts), data=recipe.data))
    pipe = f["data.pipeline"]
    assert pipe.status == "fail", pipe.line()
    assert "preprocess.name=standardize with augment[0] random_crop" in pipe.summary
    assert pipe.cause == "data.pipeline" and pipe.fix == ("preprocess.name=per_channel",)
    assert pipe.values["max_ratio"] > 5 and pipe.values["std_ratio"] > 3
    assert f["data.inputs"].status == "ok"  # un-augmented, standardize is fine
    fixed = trainlab.resolve_recipe(recipe, list(pipe.fix))
    assert fixed.preprocess.name == "per_channel"


def test_raw_digits_without_preprocessing_are_unnormalised():
    splits = splits_of("digits")
    inputs = check_inputs(splits)  # what a recipe with preprocess: none shows the model
    assert inputs.status == "warn" and "unnormalised" in inputs.summary
    assert inputs.cause == "data.scale" and inputs.fix == ("preprocess.name=per_channel",)
    pre = create_preprocessor("per_channel", 1e-5, splits.in_shape)
    pre.fit(torch.from_numpy(splits.x_train))
    assert check_inputs(splits, pre, "per_channel").status == "ok"


def test_features_100x_apart_are_fine_when_preprocessing_standardises(tmp_path: Path):
    x, y = blobs(0, [200, 200])
    x[:, 3] *= 1000.0
    np.savez(tmp_path / "scales.npz", x=x, y=y)
    splits = splits_of("npz", path=str(tmp_path / "scales.npz"))
    raw = check_inputs(splits, lambda t: t, "none")
    assert raw.status == "warn" and raw.values["scale_ratio"] > 100
    assert raw.fix == ("preprocess.name=standardize",) and "standardize" in raw.advice
    pre = create_preprocessor("standardize", 1e-5, splits.in_shape)
    pre.fit(torch.from_numpy(splits.x_train))
    ok = check_inputs(splits, pre, "standardize")
    assert ok.status == "ok", ok.line()
    assert ok.values["raw_scale_ratio"] > 100 and ok.values["scale_ratio"] < 2
    assert "standardi" not in ok.advice


def test_validation_too_small_rule():
    assert validation_too_small(144, 10) is None  # the digits recipe's split
    assert validation_too_small(400, 10) is None  # MNIST-1D's
    assert "standard error" in validation_too_small(20, 2)
    assert "per class" in validation_too_small(40, 10)
    assert "no validation split" in validation_too_small(0, 10)


def test_a_tiny_validation_split_is_said_too_small_with_a_fraction_that_would_do(tmp_path: Path):
    x, y = blobs(0, [40, 40, 40, 40])
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    cfg = Recipe.model_validate({"data": {"name": "npz", "path": str(tmp_path / "tiny.npz")}}).data
    splits = load_splits(cfg)
    split = check_split(splits, cfg)
    assert split.values["val_examples"] < 30
    assert split.status == "warn" and "too small to judge" in split.summary
    assert split.fix and split.fix[0].startswith("data.val_fraction=")
    fraction = float(split.fix[0].split("=")[1])
    assert fraction > cfg.val_fraction
    bigger = load_splits(cfg.model_copy(update={"val_fraction": fraction}))
    assert check_split(bigger, cfg).status == "ok"  # the proposed fraction does


def test_a_class_with_no_validation_example_is_named(tmp_path: Path):
    x, y = blobs(0, [300, 300, 1])
    np.savez(tmp_path / "lone.npz", x=x, y=y)
    s = splits_of("npz", path=str(tmp_path / "lone.npz"))
    split = check_split(s)
    assert split.status == "warn" and split.values["val_missing_classes"] == ["2"]
    assert "no validation example" in split.summary
    x, y = blobs(0, [300, 300, 100])
    np.savez(tmp_path / "all.npz", x=x, y=y)
    assert check_split(splits_of("npz", path=str(tmp_path / "all.npz"))).status == "ok"


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
