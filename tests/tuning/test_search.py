"""``trainlab search`` end to end on digits: stages, best.yaml, failures, errors, continuing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from trainlab.api import search
from trainlab.errors import RecipeError, TrainlabError
from trainlab.recipe import load_recipe, recipe_differences
from trainlab.tuning.engines import TrialSeededRandomSampler, grid_points
from trainlab.tuning.space import load_space

QUICK = {"training.epochs": 1, "schedule.warmup_epochs": 0}
SPACE = "optimizer.lr: loguniform(1e-3, 3e-2)\noptimizer.weight_decay: loguniform(1e-5, 1e-1)\n"


def space_file(folder: Path, text: str = SPACE) -> Path:
    path = folder / "space.yaml"
    path.write_text(text)
    return path


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainlab", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_coarse_to_fine_writes_run_folders_and_a_best_recipe_that_reruns_as_is(tmp_path: Path):
    space = space_file(tmp_path)
    out = tmp_path / "study"
    args = ["search", "digits", "training.epochs=2", "--space", str(space)]
    args += ["--stages", "4x1:2x2", "-o", str(out), "--json"]
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    coarse, fine = result["stages"]
    assert [len(coarse["trials_run"]), len(fine["trials_run"])] == [4, 2]
    assert coarse["epochs_trained"] == 4 and fine["epochs_trained"] == 4
    for key, rng in fine["ranges"].items():  # narrowed inside the coarse range
        assert coarse["ranges"][key]["low"] <= rng["low"] < rng["high"] <= rng["high"]
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == ["coarse-0000", "coarse-0001", "coarse-0002", "coarse-0003",
                       "fine-0000", "fine-0001"]  # fmt: skip
    for name in folders:
        card = json.loads((out / "trials" / name / "trial.json").read_text())
        assert card["state"] == "complete" and (out / "trials" / name / "summary.json").is_file()
    best = result["best"]
    assert best["stage"] == "fine"
    assert best["value"] == max(t["value"] for t in fine["trials_run"])
    trial_recipe = load_recipe(Path(best["run_dir"]) / "recipe.yaml", trained=True)
    written = load_recipe(out / "best.yaml")
    assert written.training.epochs == 2
    assert recipe_differences(
        trial_recipe.model_dump(mode="json"), written.model_dump(mode="json")
    ) == ["name"] or trial_recipe.model_dump(mode="json") == written.model_dump(mode="json")
    search_json = json.loads((out / "search.json").read_text())
    assert search_json["best"]["number"] == best["number"]
    # the same command again continues the finished study: nothing new runs
    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (out / "trials").iterdir()) == folders


def _npz(path: Path, shift_test_labels: bool) -> Path:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 1, 8, 8).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    y_test = y[1400:]
    if shift_test_labels:
        y_test = (y_test + 1) % 10  # every test label wrong
    np.savez(path, x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y_test)
    return path


def test_the_search_never_reads_test_metrics(tmp_path: Path):
    space = space_file(tmp_path)
    outcomes = {}
    for name, wrong in (("right", False), ("wrong", True)):
        data = _npz(tmp_path / f"{name}.npz", wrong)
        overrides = {**QUICK, "data.name": "npz", "data.path": str(data)}
        result = search(
            "digits", space, overrides, out=tmp_path / name, trials=3,
        )  # fmt: skip
        trials = result["stages"][0]["trials_run"]
        tests = [
            json.loads((Path(t["run_dir"]) / "summary.json").read_text())["test_acc"]
            for t in trials
        ]
        outcomes[name] = (result["best"]["number"], [t["value"] for t in trials], tests)
    assert outcomes["right"][0] == outcomes["wrong"][0]  # the same best trial
    assert outcomes["right"][1] == outcomes["wrong"][1]  # the same validation values
    assert min(outcomes["right"][2]) > 0.5 > max(outcomes["wrong"][2])  # test really differs


def test_a_nan_trial_is_failed_with_its_reason_and_the_study_goes_on(tmp_path: Path):
    space = space_file(tmp_path, "optimizer.lr: grid([0.01, 1.0e+6])\n")
    overrides = {**QUICK, "optimizer.name": "sgd"}
    seen = []
    result = search(
        "digits", space, overrides, out=tmp_path / "s", sampler="grid", on_trial=seen.append
    )
    trials = {t["params"]["optimizer.lr"]: t for t in result["stages"][0]["trials_run"]}
    assert trials[0.01]["state"] == "complete"
    bad = trials[1e6]
    assert bad["state"] == "failed" and "is nan" in bad["reason"] or "is inf" in bad["reason"]
    assert "\n" not in bad["reason"]
    assert result["best"]["params"] == {"optimizer.lr": 0.01}
    assert sorted(c["state"] for c in seen) == ["complete", "failed"]
    card = json.loads((Path(bad["run_dir"]) / "trial.json").read_text())
    assert card["state"] == "failed" and card["reason"] == bad["reason"]


def test_prune_sick_stops_a_trial_whose_loss_has_not_moved(tmp_path: Path):
    space = space_file(tmp_path, "optimizer.lr: grid([1.0e-9, 0.01])\n")
    overrides = {"training.epochs": 3, "schedule.warmup_epochs": 0}
    result = search("digits", space, overrides, out=tmp_path / "s", sampler="grid", prune_sick=True)
    trials = {t["params"]["optimizer.lr"]: t for t in result["stages"][0]["trials_run"]}
    stuck = trials[1e-9]
    assert stuck["state"] == "pruned", stuck
    assert stuck["reason"].startswith("sick: the loss has not moved")
    assert stuck["epochs"] == 2  # stopped after the second epoch's evaluation, not at the end
    summary = json.loads((Path(stuck["run_dir"]) / "summary.json").read_text())
    assert summary["stop_reason"] == stuck["reason"] and summary["epochs_run"] == 2
    assert trials[0.01]["state"] == "complete"  # a healthy trial is not pruned


def test_the_random_sampler_draws_by_trial_not_by_worker_order() -> None:
    def draws(order: list[int]) -> dict[int, float]:
        sampler = TrialSeededRandomSampler(7)
        study = optuna.create_study(sampler=sampler)
        found = {}
        for _ in order:
            trial = study.ask()
            found[trial.number] = trial.suggest_float("x", 1e-4, 1.0, log=True)
        return found

    assert draws([0, 1, 2]) == draws([0, 1, 2])
    other = TrialSeededRandomSampler(8)
    study = optuna.create_study(sampler=other)
    assert study.ask().suggest_float("x", 1e-4, 1.0, log=True) != draws([0])[0]


def test_the_grid_covers_each_range_with_as_many_points_as_the_budget_allows(tmp_path: Path):
    space = load_space(space_file(tmp_path), load_recipe("digits"))
    grid = grid_points(space, 9)
    assert grid["optimizer.lr"] == pytest.approx([1e-3, np.sqrt(3e-5), 3e-2], rel=1e-5)
    assert len(grid["optimizer.weight_decay"]) == 3
    assert [len(v) for v in grid_points(space, 8).values()] == [2, 2]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--space", "SPACE", "--workers", "2"], "--workers 2 on SQLite"),
        (["--space", "BAD"], "optimizer.lrr: optimizer 'adamw' has no parameter 'lrr'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_anything_runs(
    tmp_path: Path, args: list[str], says: str
):
    good = space_file(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer.lrr: loguniform(1e-4, 1e-2)\n")
    args = [str(good) if a == "SPACE" else str(bad) if a == "BAD" else a for a in args]
    done = cli("search", "digits", *args, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, lines
    assert not (tmp_path / "out").exists()  # nothing was made


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"sampler": "bayes"}, "--sampler 'bayes': expected one of random, grid, tpe"),
        ({"pruner": "early"}, "--pruner 'early': expected one of"),
        ({"overrides": {"data.val_fraction": 0}}, "data.val_fraction is 0: a search selects"),
        ({"stages": "4x1", "trials": 3}, "give --trials or --stages, not both"),
        ({"metric": "test_acc"}, "--metric 'test_acc': expected val_acc or val_loss"),
        ({"storage": "mysql://nobody@127.0.0.1:1/x"}, "--storage mysql://nobody@127.0.0.1:1/x"),
        ({"storage": "postgresql://u:secret@127.0.0.1:1/x"}, "u:***@127.0.0.1"),
    ],
)
def test_search_api_errors_name_the_problem(tmp_path: Path, settings: dict, says: str):
    with pytest.raises(TrainlabError) as info:
        search("digits", space_file(tmp_path), out=tmp_path / "o", **settings)
    assert says in str(info.value) and "secret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_an_unknown_space_names_the_shipped_ones(tmp_path: Path):
    with pytest.raises(RecipeError, match="no such search space file.*shipped: digits, mnist1d"):
        search("digits", "nowhere", out=tmp_path / "o")


def test_an_interrupted_study_continues_with_the_same_command(tmp_path: Path):
    space = space_file(tmp_path)
    out = tmp_path / "study"
    args = [sys.executable, "-m", "trainlab", "search", "digits", "training.epochs=4",
            "--space", str(space), "--trials", "2", "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first = out / "trials" / "search-0000" / "checkpoints" / "last"
    deadline = time.monotonic() + 240
    while not first.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert first.is_file(), proc.communicate()
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C mid-trial: the trial stops at a step boundary
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "run the same search command again to continue" in err and "Traceback" not in err
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert len(folders) == 2 and folders[0] == "search-0000"  # the interrupted one, resumed
    study = optuna.load_study(study_name="study-search", storage=f"sqlite:///{out}/study.db")
    states = sorted(t.state.name for t in study.get_trials())
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]  # the interrupted try, then its resume
    resumed = next(t for t in study.get_trials() if "resumes" in t.user_attrs)
    assert resumed.user_attrs["resumes"] == 0 and resumed.state.name == "COMPLETE"
    records = (out / "trials" / "search-0000" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(r)["step"] for r in records if '"loss"' in r]
    assert steps == sorted(set(steps))  # resumed exactly: no step twice, none missing between
    summary = json.loads((out / "trials" / "search-0000" / "summary.json").read_text())
    assert summary["epochs_run"] == 4
    assert yaml.safe_load((out / "best.yaml").read_text())["training"]["epochs"] == 4


def test_a_study_continues_only_with_its_own_recipe(tmp_path: Path):
    space = space_file(tmp_path)
    search("digits", space, QUICK, out=tmp_path / "s", trials=1)
    with pytest.raises(TrainlabError, match=r"was started with another recipe \(training.batch"):
        search("digits", space, {**QUICK, "training.batch_size": 512}, out=tmp_path / "s", trials=2)
    other = space_file(tmp_path, "optimizer.lr: loguniform(1e-4, 1e-3)\n")
    with pytest.raises(TrainlabError, match="holds trials of another search space"):
        search("digits", other, QUICK, out=tmp_path / "s", trials=2)
