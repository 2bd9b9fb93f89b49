"""``trainlab ensemble``: averaged probabilities (or logits) of runs, and snapshot ensembles of
one SGDR run (Huang et al. 2017)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import trainlab
from tests.conftest import last_json, run_cli
from trainlab.data.datasets import load_splits
from trainlab.engine.checkpoint import load_weights
from trainlab.errors import RecipeError, RunFolderError
from trainlab.evaluation.ensemble import ensemble
from trainlab.evaluation.scores import split_scores

QUICK = ["training.epochs=2", "training.progress=false", "model.name=mlp", "model.widths=[32]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("ensemble")
    out = []
    for seed in (0, 1):
        trainlab.train(None, [*QUICK, f"seed={seed}"], out=root / f"s{seed}", progress=False)
        out.append(root / f"s{seed}")
    return out


def _scores(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    predictor = trainlab.load_run(run)
    splits = load_splits(predictor.recipe.data)
    return split_scores(predictor, splits.x_test, splits.y_test)


def test_an_ensemble_of_one_member_is_that_member(runs: list[Path]):
    result = ensemble(runs[:1])
    evaluated = trainlab.evaluate(runs[0], plot=False)
    assert result["ensemble"] == {k: v for k, v in result["members"][0].items() if k != "member"}
    assert result["ensemble"]["test_acc"] == evaluated["test_acc"]
    for key in ("test_nll", "test_ece", "test_brier"):
        assert result["ensemble"][key] == pytest.approx(evaluated[key], rel=1e-5)
    assert result["gain_over_best_member"] == 0.0 and result["growth"] == [evaluated["test_acc"]]


def test_two_members_average_their_probabilities_or_their_logits(runs: list[Path]):
    (a, y), (b, _) = _scores(runs[0]), _scores(runs[1])
    mean_probs = (torch.softmax(a, 1) + torch.softmax(b, 1)) / 2
    by_probs = ensemble(runs)
    assert by_probs["ensemble"]["test_acc"] == float((mean_probs.argmax(1) == y).double().mean())
    nll = float(-mean_probs.gather(1, y[:, None]).log().mean())
    assert by_probs["ensemble"]["test_nll"] == pytest.approx(nll, rel=1e-5)
    by_logits = ensemble(runs, average="logits")
    mean_logits = torch.softmax((a + b) / 2, 1)
    assert by_logits["ensemble"]["test_acc"] == float((mean_logits.argmax(1) == y).double().mean())
    assert [m["test_acc"] for m in by_logits["members"]] == [
        m["test_acc"] for m in by_probs["members"]
    ]
    assert by_probs["growth"][0] == by_probs["members"][0]["test_acc"]


def test_members_of_other_data_are_refused(runs: list[Path], tmp_path: Path):
    other = tmp_path / "other"
    trainlab.train(None, [*QUICK, "data.split_seed=5"], out=other, progress=False)
    with pytest.raises(RunFolderError, match=r"data\.split_seed: 5 vs 0"):
        ensemble([runs[0], other])


def test_snapshots_are_saved_at_the_end_of_each_sgdr_cycle_and_ensembled(tmp_path: Path):
    run = tmp_path / "sgdr"
    overrides = [
        *QUICK, "training.epochs=3", "schedule.name=sgdr", "schedule.period_epochs=1",
        "schedule.warmup_epochs=0", "training.snapshots=true",
    ]  # fmt: skip
    trainlab.train(None, overrides, out=run, progress=False)
    files = sorted(p.name for p in (run / "snapshots").iterdir())
    assert files == ["cycle-1.safetensors", "cycle-2.safetensors", "cycle-3.safetensors"]
    last, final = (
        load_weights(run / "snapshots" / files[-1]),
        load_weights(run / "model.safetensors"),
    )
    assert last.keys() == final.keys() and all(torch.equal(last[k], final[k]) for k in last)
    first = load_weights(run / "snapshots" / files[0])
    assert any(not torch.equal(first[k], final[k]) for k in first)
    result = ensemble([run], snapshots=True)
    assert result["n"] == 3 and result["members"][-1]["test_acc"] == pytest.approx(
        trainlab.evaluate(run, plot=False)["test_acc"]
    )


def test_snapshots_need_sgdr_and_a_run_that_kept_them(runs: list[Path]):
    with pytest.raises(RecipeError, match="training.snapshots .* set schedule.name=sgdr"):
        trainlab.resolve_recipe(None, ["training.snapshots=true"])
    with pytest.raises(RunFolderError, match="no snapshots"):
        ensemble(runs[:1], snapshots=True)


def test_cli_ensemble_json_and_one_line_errors(runs: list[Path]):
    done = run_cli("ensemble", *map(str, runs), "--json")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["n"] == 2 and set(result["ensemble"]) == {
        "test_acc", "test_nll", "test_ece", "test_brier"
    }  # fmt: skip
    bad = run_cli("ensemble", str(runs[0]), "--snapshots")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "no snapshots" in bad.stderr


def test_logits_of_models_with_other_outputs_and_several_tta_policies_are_refused(
    tmp_path: Path, runs: list[Path]
):
    two = [*QUICK, "training.epochs=1", "schedule.warmup_epochs=0", "data.keep_classes=[0, 1]"]
    trainlab.train(None, two, out=tmp_path / "ce", progress=False)
    trainlab.train(None, [*two, "loss.name=bce"], out=tmp_path / "bce", progress=False)
    pair = [tmp_path / "ce", tmp_path / "bce"]
    with pytest.raises(RunFolderError, match=r"--logits: .*bce has 1 outputs, .*ce 2"):
        ensemble(pair, average="logits")
    mixed = ensemble(pair)  # probabilities: one logit is two class probabilities
    assert mixed["n"] == 2 and 0 <= mixed["ensemble"]["test_acc"] <= 1
    with pytest.raises(RunFolderError, match="one policy"):
        ensemble(runs, tta="identity,identity")


def test_stray_files_in_the_snapshot_folder_are_not_members(tmp_path: Path):
    from trainlab.engine.snapshots import snapshot_files

    (tmp_path / "snapshots").mkdir()
    for name in ("cycle-10.safetensors", "cycle-2.safetensors", "cycle-x.safetensors", "a.txt"):
        (tmp_path / "snapshots" / name).write_bytes(b"")
    assert [p.name for p in snapshot_files(tmp_path)] == [
        "cycle-2.safetensors", "cycle-10.safetensors"
    ]  # fmt: skip
