"""``train --seeds N``: sibling run folders, mean +- std of every figure, finished seeds kept."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from trainlab.errors import RecipeError
from trainlab.seeds import train_seeds

QUICK = {"training.epochs": 1, "schedule.warmup_epochs": 0}


def test_seeds_train_siblings_and_report_mean_and_sample_std(tmp_path: Path):
    seen = []
    result = train_seeds("digits", {**QUICK, "seed": 4}, 2, out=tmp_path / "s", quiet=True,
                         on_run=seen.append)  # fmt: skip
    assert result["seeds"] == [4, 5] and result["n"] == 2
    folders = [tmp_path / "s" / "seed-4", tmp_path / "s" / "seed-5"]
    assert result["runs"] == [str(f) for f in folders] and len(seen) == 2
    summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
    assert [s["val"]["best"]["val_acc"] for s in summaries] != [None, None]
    for key in ("test_acc", "test_loss"):
        values = [s[key] for s in summaries]
        assert result["mean"][key] == pytest.approx(statistics.mean(values))
        assert result["std"][key] == pytest.approx(statistics.stdev(values))
    val = [s["val"]["best"]["val_acc"] for s in summaries]
    assert result["mean"]["val_acc"] == pytest.approx(statistics.mean(val))
    saved = json.loads((tmp_path / "s" / "seeds.json").read_text())
    assert saved["mean"] == result["mean"] and saved["seeds"] == [4, 5]
    from trainlab.evaluation.ensemble import ensemble

    joint = saved["ensemble"]  # the two seeds as one ensemble
    assert {k: v for k, v in joint.items() if k != "gain_over_mean_member"} == pytest.approx(
        ensemble(folders)["ensemble"]
    )
    mean_seed = statistics.mean(s["test_acc"] for s in summaries)
    assert joint["gain_over_mean_member"] == pytest.approx(joint["test_acc"] - mean_seed)
    recipes = [(f / "recipe.yaml").read_text() for f in folders]
    assert "seed: 4" in recipes[0] and "seed: 5" in recipes[1]
    # the same call again keeps the finished runs (nothing is trained twice)
    stamps = [(f / "summary.json").stat().st_mtime_ns for f in folders]
    again = train_seeds("digits", {**QUICK, "seed": 4}, 2, out=tmp_path / "s", quiet=True)
    assert again["mean"] == result["mean"]
    assert [(f / "summary.json").stat().st_mtime_ns for f in folders] == stamps


def test_one_seed_has_zero_spread_and_bad_counts_are_refused(tmp_path: Path):
    one = train_seeds("digits", QUICK, 1, out=tmp_path / "one", quiet=True)
    assert set(one["std"].values()) == {0.0} and "ensemble" not in one
    for bad in (0, -2, True, 1.5):
        with pytest.raises(RecipeError, match="expected a whole number of seeds"):
            train_seeds("digits", QUICK, bad, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_cli_seeds_prints_each_run_then_mean_and_std(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "trainlab", "train", "digits", "training.epochs=1",
         "schedule.warmup_epochs=0", "--seeds", "2", "-o", str(tmp_path / "c"), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert sum("test_acc" in line and "->" in line for line in lines) == 2
    assert any(line.startswith("test_acc ") and "+-" in line for line in lines)
    assert any(line.startswith("ensemble of the 2 seeds: test_acc ") for line in lines)
    assert lines[-1].startswith("2 seeds -> ") and lines[-1].endswith("seeds.json")


def test_a_seed_folder_of_another_recipe_is_refused_not_reused(tmp_path: Path):
    from trainlab.errors import RunFolderError

    train_seeds("digits", QUICK, 1, out=tmp_path / "s", quiet=True)
    with pytest.raises(RunFolderError, match=r"seed-0: trained with another recipe \(optimizer.lr"):
        train_seeds("digits", {**QUICK, "optimizer.lr": 0.5}, 1, out=tmp_path / "s", quiet=True)
