"""Mistakes a user makes, met at the real command line: each is exactly one line on stderr,
exit code 2 and no traceback (more cases are added here as they are found)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BROKEN_MODEL = """
from torch import nn


class Broken(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        raise ValueError("hidden size must be even")
"""


def run_with_path(*args: str, path: Path | None = None) -> subprocess.CompletedProcess:
    """``trainlab ARGS`` in a subprocess, ``path`` first on its PYTHONPATH (a user's module)."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "trainlab.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def one_line(done: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_user_class_whose_constructor_raises(tmp_path: Path):
    (tmp_path / "usermodels.py").write_text(BROKEN_MODEL)
    run = tmp_path / "run"
    done = run_with_path(
        "train", "model.name=usermodels:Broken", "augment=[]", "--out", str(run), path=tmp_path
    )
    line = one_line(done)
    assert "model.name='usermodels:Broken'" in line
    assert "ValueError: hidden size must be even" in line
    assert not run.exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["model.name=tv.resnet18", "model.kwargs.num_classes=3"],
            "model.kwargs.num_classes: trainlab passes num_classes from the data",
        ),
        (
            ["model.name=tv.resnet18", "model.kwargs.weights=DEFAULT"],
            "model.kwargs.weights='DEFAULT' names torchvision weights, and nothing is downloaded",  # noqa: E501
        ),
        (
            ["model.name=tv.resnet18", "model.kwargs.hidden=3"],
            "model.name='tv.resnet18': constructing the model raised TypeError",
        ),
    ],
    ids=["kwargs-num-classes", "tv-weights", "tv-unknown-kwarg"],
)
def test_model_kwargs_trainlab_passes_or_the_class_refuses(
    tmp_path: Path, overrides: list[str], expected: str
):
    run = tmp_path / "run"
    line = one_line(run_with_path("train", *overrides, "augment=[]", "--out", str(run)))
    assert expected in line, line
    assert not run.exists()


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory) -> Path:
    """A short run on a two-class .npz file of the user's."""
    import numpy as np

    import trainlab

    root = tmp_path_factory.mktemp("npz")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    np.savez(root / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    overrides = [
        "data.name=npz", f"data.path={root / 'data.npz'}", "model.name=mlp", "augment=[]",
        "training.epochs=2", "schedule.warmup_epochs=0", "training.progress=false",
    ]  # fmt: skip
    trainlab.train(None, overrides, out=root / "run", progress=False)
    return root / "run"


def test_evaluating_a_run_whose_data_now_has_one_class(npz_run: Path, tmp_path: Path):
    import numpy as np
    import yaml

    data = Path(yaml.safe_load((npz_run / "recipe.yaml").read_text())["data"]["path"])
    saved = data.read_bytes()
    try:
        np.savez(data, x=np.ones((50, 4), np.float32), y=np.zeros(50, np.int64))
        line = one_line(run_with_path("evaluate", str(npz_run)))
    finally:
        data.write_bytes(saved)
    assert "one class only" in line and str(data) in line


def test_an_oserror_while_rewriting_metrics_jsonl_at_resume(npz_run: Path):
    log = npz_run / "metrics.jsonl"
    saved = log.read_bytes()
    log.unlink()
    log.mkdir()  # what the resumed run must cut back is not a file any more
    try:
        line = one_line(run_with_path("train", "--out", str(npz_run), "--resume"))
    finally:
        log.rmdir()
        log.write_bytes(saved)
    assert f"{log}: cannot rewrite the log to resume (IsADirectoryError" in line
