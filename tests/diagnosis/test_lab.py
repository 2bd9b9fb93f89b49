"""``trainlab lab init-stats``: lecture 000's experiment (dims = [4096] * 7, batch 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlab.diagnosis.lab import init_stats
from trainlab.errors import RecipeError

from ..conftest import last_json, run_cli


def _stds(init: str, act: str, width: int = 1024) -> list[float]:
    return [row["std"] for row in init_stats(init, act, depth=6, width=width)]


def test_small_normal_with_tanh_collapses_like_the_lecture():
    # the lecture's figure at width 4096: std 0.49, 0.29, 0.18, 0.11, 0.07, 0.05
    stds = _stds("normal:0.01", "tanh", width=4096)
    lecture = [0.49, 0.29, 0.18, 0.11, 0.07, 0.05]
    assert stds == pytest.approx(lecture, rel=0.1)
    assert all(b < 0.7 * a for a, b in zip(stds, stds[1:], strict=False))
    # narrower layers shrink faster (std 0.01 * sqrt(1024) = 0.32 per layer): "tend to zero"
    assert _stds("normal:0.01", "tanh")[-1] < 2e-3


def test_xavier_with_tanh_keeps_the_scale():
    stds = _stds("xavier", "tanh")
    # the lecture's "just right": 0.63, 0.49, 0.41, 0.36, 0.32, 0.30
    assert stds == pytest.approx([0.63, 0.49, 0.41, 0.36, 0.32, 0.30], rel=0.1)
    assert stds[-1] > 0.4 * stds[0]


def test_xavier_with_relu_collapses_again():
    stds = _stds("xavier", "relu")
    ratios = [b / a for a, b in zip(stds, stds[1:], strict=False)]
    assert all(r == pytest.approx(2**-0.5, abs=0.08) for r in ratios)  # variance halves
    assert stds[-1] < 0.25 * stds[0]


def test_kaiming_with_relu_keeps_it():
    stds = _stds("kaiming", "relu")
    assert all(0.8 < s / stds[0] < 1.25 for s in stds)


def test_registered_names_and_parameters():
    rows = init_stats("normal:1.0", "sigmoid", depth=2, width=64, batch=4)
    assert [r["layer"] for r in rows] == [1, 2] and set(rows[0]) == {"layer", "mean", "std"}
    assert init_stats("lsuv", "relu", depth=3, width=64)[-1]["std"] > 0.1
    with pytest.raises(RecipeError, match="did you mean 'xavier'"):
        init_stats("xavir", "tanh", width=8)
    with pytest.raises(RecipeError, match="std"):
        init_stats("normal:-1", "tanh", width=8)
    with pytest.raises(RecipeError, match="did you mean 'relu'"):
        init_stats("kaiming", "rellu", width=8)


def test_cli_json_and_figure_at_the_default_width(tmp_path: Path):
    png = tmp_path / "stats.png"
    result = run_cli("lab", "init-stats", "--init", "normal:0.01", "-o", str(png), "--json")
    assert result.returncode == 0, result.stderr
    data = last_json(result.stdout)
    assert data["init"] == "normal:0.01" and data["activation"] == "tanh"
    assert [r["layer"] for r in data["layers"]] == [1, 2, 3, 4, 5, 6]
    assert data["layers"][-1]["std"] < 0.1 * data["layers"][0]["std"] * 1.1
    assert data["figure"] == str(png) and png.stat().st_size > 10_000


def test_cli_table_and_one_line_error(tmp_path: Path):
    ok = run_cli("lab", "init-stats", "--init", "kaiming", "--act", "relu", "--width", "256",
                 "-o", str(tmp_path / "k.png"))  # fmt: skip
    assert ok.returncode == 0 and "layer" in ok.stdout and "k.png" in ok.stdout
    bad = run_cli("lab", "init-stats", "--init", "xavir", "--json")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "did you mean 'xavier'" in bad.stderr
    assert "error" in last_json(bad.stdout)
