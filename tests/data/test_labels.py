"""What the labels say about the classes (trainlab.data.datasets.check_classes) and the class-
stratified splits, met as a user meets them: ``trainlab train`` on a small file exits 2 with one
line naming the file, the class and the first rows, and creates no run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import last_json, run_cli
from trainlab.data.datasets import _split, _stratified_split, check_classes, load_splits
from trainlab.errors import DataError, RecipeError
from trainlab.recipe import DataConfig, load_recipe

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 3)).astype(np.float32)
Y = np.arange(300) % 3
QUICK = ["model.name=mlp", "model.widths=[8]", "augment=[]", "training.epochs=2"]


def _csv(path: Path, labels: np.ndarray) -> Path:
    rows = [f"{a:.3f},{b:.3f},{int(c)}" for (a, b, _), c in zip(X, labels, strict=True)]
    path.write_text("\n".join(["a,b,label", *rows]) + "\n")
    return path


def _train_fails(tmp_path: Path, *overrides: str) -> str:
    """``trainlab train OVERRIDES`` exits 2 with one line, no traceback and no run folder."""
    run = tmp_path / "run"
    done = run_cli("train", *overrides, *QUICK, "--out", str(run), "--no-progress")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("trainlab: error: "), lines[0]
    assert not run.exists()
    return lines[0]


# --------------------------------------------------------------------------- through the CLI


def test_labels_from_1_are_refused(tmp_path: Path):
    data = _csv(tmp_path / "train.csv", Y + 1)
    line = _train_fails(tmp_path, "data.name=csv", f"data.path={data}")
    assert (
        f"{data}: class 0 has no training examples (labels are 1..3); "
        "declare data.num_classes or relabel from 0"
    ) in line


def test_one_stray_label_is_named_with_its_rows(tmp_path: Path):
    y = Y.copy()
    y[[12, 40]] = 7
    data = tmp_path / "train.npz"
    np.savez(data, x=X, y=y)
    line = _train_fails(tmp_path, "data.name=npz", f"data.path={data}")
    assert f"{data}: label 7 (rows 12, 40) appears in 2 of 300 rows" in line
    assert "classes 3..6 have no training examples" in line
    assert "declare data.num_classes: 8" in line


def test_a_stray_label_in_a_csv_names_its_line(tmp_path: Path):
    y = Y.copy()
    y[12] = 7
    data = _csv(tmp_path / "train.csv", y)
    line = _train_fails(tmp_path, "data.name=csv", f"data.path={data}")
    assert "label 7 (line 14) appears in 1 of 300 rows" in line  # header is line 1


def test_a_test_label_never_seen_in_training_is_refused(tmp_path: Path):
    test_y = np.arange(30) % 3
    test_y[5] = 3
    train, test = _csv(tmp_path / "train.csv", Y), tmp_path / "test.csv"
    test.write_text("\n".join(["a,b,label", *(f"0,0,{c}" for c in test_y)]) + "\n")
    line = _train_fails(tmp_path, "data.name=csv", f"data.path={train}", f"data.test_path={test}")
    assert f"{test}: label 3 (line 7) never occurs in training (training labels: 0..2)" in line


def test_one_class_is_refused_up_front(tmp_path: Path):
    data = tmp_path / "one.npz"
    np.savez(data, x=X, y=np.zeros(300, np.int64))
    line = _train_fails(tmp_path, "data.name=npz", f"data.path={data}")
    assert f"{data}: every training label is 0 (one class only)" in line


def test_declared_classes_still_refuse_labels_out_of_range(tmp_path: Path):
    data = tmp_path / "train.npz"
    np.savez(data, X_train=X, y_train=Y + 1)
    line = _train_fails(tmp_path, "data.name=npz", f"data.path={data}", "data.num_classes=3")
    assert "label 3 (rows 2, 5, 8, ...; 100 of 300 rows) is out of range [0, 3)" in line
    assert "data.num_classes declares 3 classes" in line


def test_num_classes_and_class_names_must_agree(tmp_path: Path):
    line = _train_fails(tmp_path, "data.num_classes=3", "data.classes=[a, b]")
    assert "num_classes=3 but classes names 2" in line


def test_npz_labels_without_features_name_the_right_keys(tmp_path: Path):
    data = tmp_path / "train.npz"
    np.savez(data, y_train=Y)
    line = _train_fails(tmp_path, "data.name=npz", f"data.path={data}")
    assert f"{data}: key 'y_train' needs 'x_train' beside it; found keys: y_train" in line


@pytest.fixture(scope="module")
def declared_run(tmp_path_factory) -> Path:
    """Labels 1..3 (scikit-learn's X_train spelling) trained as 4 declared classes."""
    folder = tmp_path_factory.mktemp("declared")
    data = folder / "d.npz"
    np.savez(data, X_train=X, y_train=Y + 1, X_test=X[:60], y_test=Y[:60] + 1)
    run = folder / "run"
    done = run_cli(
        "train", "data.name=npz", f"data.path={data}", "data.num_classes=4", *QUICK,
        "--out", str(run), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return run


def test_declared_empty_class_trains_and_has_no_per_class_figure(declared_run: Path):
    done = run_cli("evaluate", str(declared_run), "--json")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert set(result["per_class_acc"]) == {"1", "2", "3"}  # class 0: absent, not 0.0
    assert result["no_test_examples"] == ["0"]
    assert len(result["confusion"]) == 4
    table = run_cli("evaluate", str(declared_run))
    assert table.returncode == 0, table.stderr
    assert "no test examples: 0" in table.stdout


# --------------------------------------------------------------------------- check_classes


@pytest.mark.parametrize(
    "y, message",
    [
        (np.array([1, 2, 3, 1]), "class 0 has no training examples (labels are 1..3)"),
        (np.array([2, 3, 4, 2]), "classes 0..1 have no training examples (labels are 2..4)"),
        (np.array([0, 2, 4] * 10), "classes 1, 3 have no training examples (labels are 0, 2, 4)"),
        (np.array([0, 1, 2] * 10 + [9]), "label 9 (row 30) appears in 1 of 31 rows"),
        (np.array([5, 5, 5]), "every training label is 5 (one class only)"),
        (np.array([0, 65535, 1]), "label 65535 (row 1) appears in 1 of 3 rows"),
    ],
)
def test_inferred_classes_must_all_have_training_examples(y: np.ndarray, message: str):
    with pytest.raises(DataError, match="^d.npz: ") as info:
        check_classes(y, source="d.npz")
    assert message in str(info.value)


def test_a_sentinel_label_is_not_suggested_as_a_class_count():
    with pytest.raises(DataError) as info:
        check_classes(np.array([0, 65535, 1]), source="d.npz")
    assert str(info.value).endswith("fix those rows, or declare data.num_classes")


def test_contiguous_labels_pass_and_give_c():
    assert check_classes(np.array([0, 1, 2, 1]), np.array([2, 0])) == (3, [])


def test_declared_classes_may_be_empty_but_are_noted():
    count, notes = check_classes(
        np.array([1, 2, 1]), np.array([0, 3]), 4, source="d", declared_by="data.num_classes"
    )
    assert count == 4
    assert notes[0].startswith("classes 0, 3 have no training examples (data.num_classes")
    assert "test labels 0, 3 have no training examples" in notes[1]


def test_test_labels_must_be_seen_in_training():
    with pytest.raises(DataError, match=r"^d \(test\): label 3 \(rows 1, 2\) never occurs"):
        check_classes(np.array([0, 1, 2]), np.array([0, 3, 3]), source="d")


def test_recipe_classes_are_checked_at_load():
    with pytest.raises(RecipeError, match="num_classes=3 but classes names 2"):
        load_recipe(None, ["data.num_classes=3", "data.classes=[a, b]"])
    with pytest.raises(RecipeError, match="given twice: a"):
        load_recipe(None, ["data.classes=[a, b, a]"])
    assert DataConfig(classes=["a", "b"], num_classes=2).classes == ["a", "b"]


def test_class_names_map_a_named_source_by_name(tmp_path: Path):
    path = tmp_path / "d.npz"
    np.savez(path, x=X, y=Y, classes=np.array(["cat", "dog", "eel"]))
    splits = load_splits(DataConfig(name="npz", path=str(path), classes=["eel", "dog", "cat", "x"]))
    assert splits.classes == ["eel", "dog", "cat", "x"]
    # cat (0 in the file) is now 2, eel (2) is 0: the recipe's order is the label order
    rows = {r.tobytes(): c for r, c in zip(X, Y, strict=True)}
    pairs = zip(splits.x_train, splits.y_train, strict=True)
    assert all(2 - rows[r.tobytes()] == c for r, c in pairs)
    assert any("class 3 has no training examples" in n for n in splits.notes)
    with pytest.raises(DataError, match="class 'cat' of the data is not in data.classes"):
        load_splits(DataConfig(name="npz", path=str(path), classes=["dog", "eel"]))
    with pytest.raises(DataError, match="data.num_classes is 4 but the data names 3 classes"):
        load_splits(DataConfig(name="npz", path=str(path), num_classes=4))


# --------------------------------------------------------------------------- stratified splits


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.33])
def test_stratified_split_keeps_each_class_share_within_one_example(fraction: float):
    y = np.repeat([0, 1, 2, 3], [500, 120, 37, 9])
    kept, held = _stratified_split(y, fraction, seed=3)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(y)))
    assert len(held) == round(len(y) * fraction)
    for c, n in enumerate(np.bincount(y)):
        assert abs(np.sum(y[held] == c) - n * fraction) <= 1, c


def test_stratified_split_is_fixed_by_its_seed():
    y = np.arange(200) % 4
    first, again, other = (_stratified_split(y, 0.2, s)[1] for s in (0, 0, 1))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_a_class_with_one_example_stays_in_train_and_is_reported(tmp_path: Path):
    y = np.zeros(300, np.int64)
    y[:100] = 1
    y[299] = 2
    path = tmp_path / "rare.npz"
    np.savez(path, x=X, y=y)
    splits = load_splits(DataConfig(name="npz", path=str(path)))
    assert splits.y_train.tolist().count(2) == 1
    assert 2 not in splits.y_val and 2 not in splits.y_test
    assert "class 2 has 1 example: none left for the test split" in splits.notes
    assert "class 2 has 1 example: none left for the validation split" in splits.notes


def test_stratify_false_is_the_plain_cut(tmp_path: Path):
    path = tmp_path / "d.npz"
    np.savez(path, x=X, y=Y)
    splits = load_splits(DataConfig(name="npz", path=str(path), stratify=False))
    keep, test = _split(300, 0.2, 0)
    np.testing.assert_array_equal(splits.x_test, X[test])
    assert len(splits.x_train) + len(splits.x_val) == len(keep)
