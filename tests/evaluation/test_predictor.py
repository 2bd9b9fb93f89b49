"""``load_run`` / ``trainlab predict``: a trained run used without its dataset, giving exactly
the figures evaluation measured, on every input kind a user has (npz, CSV, images)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_png

import trainlab
from tests.conftest import last_json, run_cli
from trainlab.data.datasets import load_splits
from trainlab.errors import DataError

QUICK = ["training.epochs=3", "training.progress=false"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """The default recipe (digits convnet), trained briefly."""
    run = tmp_path_factory.mktemp("predict") / "run"
    trainlab.train(None, QUICK, out=run, progress=False)
    return run


def test_predict_on_the_test_split_reproduces_evaluate(digits_run: Path, tmp_path: Path):
    evaluated = trainlab.evaluate(digits_run, plot=False)
    predictor = trainlab.load_run(digits_run)
    splits = load_splits(predictor.recipe.data)
    np.savez(tmp_path / "test.npz", x=splits.x_test, y=splits.y_test)
    predicted = trainlab.predict(digits_run, tmp_path / "test.npz")
    assert predicted["n"] == len(splits.y_test)
    assert predicted["accuracy"] == evaluated["test_acc"]
    metrics, _ = predictor.evaluate(splits.x_test, splits.y_test)
    assert metrics["test_loss"] == evaluated["test_loss"]


def test_per_class_accuracy_leaves_out_classes_without_examples(digits_run: Path):
    from trainlab.engine.metrics import per_class_accuracy

    conf = torch.tensor([[3, 1, 0], [0, 0, 0], [1, 0, 4]])
    # "b" has no examples: absent, not 0.0 (which would read as always wrong)
    assert per_class_accuracy(conf, ["a", "b", "c"]) == {"a": 0.75, "c": 0.8}
    evaluated = trainlab.evaluate(digits_run, plot=False)
    assert len(evaluated["per_class_acc"]) == 10 and evaluated["no_test_examples"] == []


def test_probabilities_classes_and_shapes(digits_run: Path):
    predictor = trainlab.load_run(digits_run)
    x = load_splits(predictor.recipe.data).x_test[:17]
    probs = predictor.predict_proba(x)
    assert probs.shape == (17, 10) and predictor.classes == [str(i) for i in range(10)]
    torch.testing.assert_close(probs.sum(1), torch.ones(17))
    assert torch.equal(predictor.predict(x), probs.argmax(1))
    torch.testing.assert_close(predictor.predict_proba(x[3]), probs[3:4])  # one example
    with pytest.raises(
        DataError, match=r"inputs of shape \(17, 64\); the model takes \(N, 1, 8, 8\)"
    ):
        predictor.predict_proba(x.reshape(17, 64))


def test_load_run_reads_no_dataset(digits_run: Path, monkeypatch):
    import trainlab.data.datasets as datasets

    x = load_splits(trainlab.load_run(digits_run).recipe.data).x_test[:5]

    def refuse(*args, **kwargs):
        raise AssertionError("load_run read the dataset")

    monkeypatch.setattr(datasets, "load_splits", refuse)
    for weights in ("final", "best", "last"):
        assert trainlab.load_run(digits_run, weights).predict_proba(x).shape == (5, 10)


def test_best_and_last_weights_are_the_checkpoints(digits_run: Path):
    final = trainlab.load_run(digits_run, "final").model.state_dict()
    last = trainlab.load_run(digits_run, "last").model.state_dict()
    for key in final:
        assert torch.equal(final[key], last[key]), key  # the run ended on its last checkpoint


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray | None, order: list[int]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        names = [f"f{i}" for i in order]
        writer.writerow([*names, *(["label"] if y is not None else [])])
        for row, label in zip(x, y if y is not None else [None] * len(x), strict=True):
            cells = [f"{row[i]:g}" for i in order]
            writer.writerow([*cells, *([int(label)] if y is not None else [])])


def test_csv_with_the_training_columns_in_any_order(tmp_path: Path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data, digits.target
    _write_csv(tmp_path / "train.csv", x[:1400], y[:1400], list(range(64)))
    _write_csv(tmp_path / "test.csv", x[1400:], y[1400:], list(range(64)))
    overrides = [
        *QUICK,
        f"data={{name: csv, path: {tmp_path / 'train.csv'}, test_path: {tmp_path / 'test.csv'}}}",
        "model.name=mlp",
        "augment=[]",
    ]
    run = tmp_path / "run"
    trainlab.train(None, overrides, out=run, progress=False)
    evaluated = trainlab.evaluate(run, plot=False)
    with_labels = trainlab.predict(run, tmp_path / "test.csv", out=tmp_path / "pred.csv")
    assert with_labels["accuracy"] == evaluated["test_acc"]
    shuffled = list(np.random.default_rng(0).permutation(64))
    _write_csv(tmp_path / "unlabelled.csv", x[1400:], None, shuffled)
    without = trainlab.predict(run, tmp_path / "unlabelled.csv")
    assert "accuracy" not in without
    assert [r["class"] for r in without["rows"]] == [r["class"] for r in with_labels["rows"]]
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0].split(",")[:4] == ["input", "class", "name", "p_0"] and len(lines) == 398
    _write_csv(tmp_path / "short.csv", x[1400:1402, :10], None, list(range(10)))
    with pytest.raises(DataError, match=r"short.csv: missing the training column\(s\) f10"):
        trainlab.predict(run, tmp_path / "short.csv")


def _image_folder(root: Path) -> None:
    """scikit-learn's digits as 16x16 grayscale PNGs, train/ and test/ class folders."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        split = "test" if i % 5 == 0 else "train"
        pixels = torch.from_numpy(image * 15.9375).to(torch.uint8)[None]
        big = pixels.repeat_interleave(2, 1).repeat_interleave(2, 2)
        path = root / split / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png(big).numpy().tobytes())


def test_image_folders_and_one_image(tmp_path: Path):
    _image_folder(tmp_path / "digits")
    run = tmp_path / "run"
    overrides = [*QUICK, f"data={{name: imagefolder, path: {tmp_path / 'digits'}}}"]
    trainlab.train(None, overrides, out=run, progress=False)
    evaluated = trainlab.evaluate(run, plot=False)
    folder = trainlab.predict(run, tmp_path / "digits" / "test")  # class subfolders: labels
    assert folder["accuracy"] == evaluated["test_acc"]
    one = tmp_path / "digits" / "test" / "3" / sorted((tmp_path / "digits/test/3").iterdir())[0]
    single = trainlab.predict(run, one)
    assert single["n"] == 1 and "accuracy" not in single
    row = next(r for r in folder["rows"] if r["input"].endswith(one.name))
    assert single["rows"][0]["probabilities"] == row["probabilities"]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / one.name).write_bytes(one.read_bytes())
    assert trainlab.predict(run, flat)["rows"][0]["probabilities"] == row["probabilities"]


def test_cli_predict_prints_json_and_refuses_bad_input(digits_run: Path, tmp_path: Path):
    predictor = trainlab.load_run(digits_run)
    np.save(tmp_path / "x.npy", load_splits(predictor.recipe.data).x_test[:4])
    result = run_cli("predict", str(digits_run), str(tmp_path / "x.npy"), "--json")
    assert result.returncode == 0, result.stderr
    out = last_json(result.stdout)
    assert out["n"] == 4 and set(out["rows"][0]) == {"input", "class", "name", "probabilities"}
    bad = run_cli("predict", str(digits_run), str(tmp_path / "nothing.npz"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"trainlab: error: {tmp_path / 'nothing.npz'}: no such file or folder"
    ]


def test_a_run_trained_before_a_newer_recipe_rule_still_loads(tmp_path: Path):
    """standardize beside a moving augmentation is refused for new runs (issue 17); a run
    folder that recorded it (trained before the rule) is still loaded and evaluated."""
    run = tmp_path / "old"
    flat = [*QUICK, "model.name=mlp", "augment=[]", "preprocess=standardize"]
    trainlab.train(None, [*flat, "schedule.warmup_epochs=0"], out=run, progress=False)
    recipe = run / "recipe.yaml"
    recipe.write_text(
        recipe.read_text().replace("augment: []", "augment:\n- name: random_crop\n  padding: 1")
    )
    with pytest.raises(trainlab.RecipeError, match="per-position statistics"):
        trainlab.resolve_recipe(recipe, None)
    report = trainlab.evaluate(run, plot=False)
    assert report["test_acc"] > 0.5
