"""Bad data met when a run resumes: exit code 2, one line naming the file and row or path, and the
run folder (checkpoints included) left exactly as it was. Runs the CLI in-process (CliRunner)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_png
from typer.testing import CliRunner

from trainlab.cli import app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchvision's write_png


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _resume_fails(run: Path, expected: list[str]) -> None:
    before = _snapshot(run)
    result = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--no-progress"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: "), result.output
    for part in expected:
        assert part in lines[0], lines[0]
    assert _snapshot(run) == before


def _train(run: Path, data: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "train",
            data,
            "model.name=mlp",
            "model.widths=[8]",
            "augment=[]",
            "training.epochs=2",
            "schedule.warmup_epochs=0",
            "preprocess=standardize",
            "--out",
            str(run),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- arrays and tables

GOOD_X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
GOOD_Y = np.arange(60) % 3
CLASSES = np.array(["0", "1", "2"])  # the class list fixes C, so a label of 5 is out of range


def _bad_npz(kind: str) -> dict:
    x, y = GOOD_X.copy(), GOOD_Y.astype(np.float64)
    if kind == "out_of_range":
        y[7] = 5
    elif kind == "negative":
        y[7] = -1
    elif kind == "float":
        y[7] = 1.5
    elif kind == "nan_label":
        y[7] = np.nan
    elif kind == "length":
        y = y[:-1]
    elif kind == "ndim":
        x = x[:, 0]
    elif kind == "one_class":
        y[:] = 0
    return {"x": x, "y": y, "classes": CLASSES}


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("out_of_range", ["row 7", "out of range"]),
        ("negative", ["row 7", "negative"]),
        ("float", ["row 7", "not an integer"]),
        ("nan_label", ["row 7", "not an integer"]),
        ("length", ["60 feature rows but 59 labels"]),
        ("ndim", ["shape"]),
        ("one_class", ["every training label is 0 (one class only)"]),
    ],
)
def test_bad_arrays(tmp_path: Path, kind: str, expected: list[str]):
    data = tmp_path / "d.npz"
    np.savez(data, x=GOOD_X, y=GOOD_Y, classes=CLASSES)
    run = tmp_path / "run"
    _train(run, f"data={{name: npz, path: '{data}'}}")
    np.savez(data, **_bad_npz(kind))
    _resume_fails(run, ["d.npz", *expected])


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path):
    data = tmp_path / "d.npz"
    np.savez(data, x=GOOD_X, y=GOOD_Y)
    run = tmp_path / "run"
    _train(run, f"data={{name: npz, path: '{data}'}}")
    np.savez(data, x=np.array([object()] * 60, dtype=object), y=GOOD_Y)
    _resume_fails(run, ["d.npz"])


def _csv(rows: list[str]) -> str:
    return "\n".join(["a,b,label", *rows]) + "\n"


GOOD_ROWS = [f"{i % 5},{i % 7},{i % 3}" for i in range(60)]


@pytest.mark.parametrize(
    "rows, expected",
    [
        (GOOD_ROWS[:10] + ["1,2"] + GOOD_ROWS[11:], ["line 12"]),
        (GOOD_ROWS[:10] + ["1,,2"] + GOOD_ROWS[11:], ["line 12"]),
        (GOOD_ROWS[:10] + ["1,x,2"] + GOOD_ROWS[11:], ["line 12"]),
        ([], ["no data rows"]),
        (
            [f"{i % 5},{i % 7},{i % 3 + 1}" for i in range(60)],
            ["class 0 has no training examples (labels are 1..3)"],
        ),
        (GOOD_ROWS[:10] + ["1,2,9"] + GOOD_ROWS[11:], ["label 9 (line 12)", "1 of 60 rows"]),
    ],
    ids=["ragged", "missing-cell", "non-numeric", "no-rows", "labels-from-1", "stray-label"],
)
def test_bad_csv(tmp_path: Path, rows: list[str], expected: list[str]):
    data = tmp_path / "t.csv"
    data.write_text(_csv(GOOD_ROWS))
    run = tmp_path / "run"
    _train(run, f"data={{name: csv, path: '{data}'}}")
    data.write_text(_csv(rows))
    _resume_fails(run, ["t.csv", *expected])


def test_a_byte_order_mark_is_tolerated(tmp_path: Path):
    data = tmp_path / "t.csv"
    data.write_text("\ufeff" + _csv(GOOD_ROWS), encoding="utf-8")
    _train(tmp_path / "run", f"data={{name: csv, path: '{data}'}}")


# --------------------------------------------------------------------------- image folders


def _folder(root: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            write_png(
                (torch.rand(3, 8, 8, generator=gen) * 255).to(torch.uint8),
                str(root / c / f"{i}.png"),
            )
    return root


def _spoil(root: Path, kind: str) -> str:
    if kind == "empty_class":
        (root / "c").mkdir()
        return str(root / "c")
    target = root / "a" / "3.png"
    if kind == "zero_bytes":
        target.write_bytes(b"")
    elif kind == "truncated":
        target.write_bytes(target.read_bytes()[:40])
    elif kind == "text":
        target.write_text("not an image at all\n")
    elif kind == "bomb":
        data = bytearray(target.read_bytes())
        data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR claims 100000 x 100000
        target.write_bytes(bytes(data))
    return str(target)


@pytest.mark.parametrize("kind", ["empty_class", "zero_bytes", "truncated", "text", "bomb"])
def test_bad_image_folders(tmp_path: Path, kind: str):
    root = _folder(tmp_path / "images")
    run = tmp_path / "run"
    data = f"data={{name: imagefolder, path: '{root}', cache_dir: '{tmp_path / 'cache'}'}}"
    _train(run, data)
    culprit = _spoil(root, kind)
    _resume_fails(run, [culprit])
