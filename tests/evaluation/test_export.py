"""``trainlab export``: raw inputs in, the Predictor's probabilities out, preprocessing inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import trainlab
from tests.conftest import last_json, run_cli
from trainlab.data.datasets import load_splits

# ZCA whitening: the preprocessing that is easiest to get wrong outside the graph
RECIPE = ["training.epochs=2", "training.progress=false", "preprocess=zca", "augment=[]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    trainlab.train(None, RECIPE, out=out, progress=False)
    return out


def _inputs(run: Path) -> np.ndarray:
    return load_splits(trainlab.load_run(run).recipe.data).x_test[:50]


def test_torchscript_round_trip_matches_predict_proba(run: Path, tmp_path: Path):
    written = trainlab.export(run, "torchscript", out=tmp_path / "m.pt")
    assert written["path"] == str(tmp_path / "m.pt")
    x = _inputs(run)
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    expected = trainlab.load_run(run).predict_proba(x)
    torch.testing.assert_close(loaded(torch.from_numpy(x)), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded(torch.from_numpy(x[:3])), expected[:3], atol=1e-5, rtol=0)


def test_onnx_round_trip_matches_predict_proba(run: Path, tmp_path: Path):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    trainlab.export(run, "onnx", out=tmp_path / "m.onnx")
    x = _inputs(run)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = session.run(None, {"x": x})[0]
    expected = trainlab.load_run(run).predict_proba(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert session.run(None, {"x": x[:1]})[0].shape == (1, 10)  # the batch dimension is free


def test_cli_export_json_and_a_bad_format(run: Path, tmp_path: Path):
    result = run_cli("export", str(run), "-o", str(tmp_path / "a.pt"), "--json")
    assert result.returncode == 0, result.stderr
    assert last_json(result.stdout)["input_shape"] == ["N", 1, 8, 8]
    bad = run_cli("export", str(run), "--format", "tflite")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--format 'tflite': expected one of torchscript, onnx" in bad.stderr
