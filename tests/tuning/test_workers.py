"""Workers that die: a real PostgreSQL server shared by 3 worker processes, one SIGKILLed
mid-trial; and one SQLite worker killed and started again with the same command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tests.postgres_server import postgres_url  # noqa: F401  (a pytest fixture)

SPACE = "optimizer.lr: loguniform(1e-3, 3e-2)\noptimizer.weight_decay: loguniform(1e-5, 1e-1)\n"
TRIALS = 6


def worker(
    tmp: Path, out: str, storage: str | None, study: str, *extra: str, trials: int = TRIALS
) -> subprocess.Popen:
    """One ``trainlab search`` process, as a machine of the study would start it."""
    (tmp / "space.yaml").write_text(SPACE)
    args = [sys.executable, "-m", "trainlab", "search", "digits", "training.epochs=2",
            "schedule.warmup_epochs=0", "--space", str(tmp / "space.yaml"),
            "--trials", str(trials), "--study", study, "-o", str(tmp / out),
            "--heartbeat", "1", *extra]  # fmt: skip
    if storage:
        args += ["--storage", storage]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # three workers share two cores
    return subprocess.Popen(
        args, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_study(url: str, name: str, timeout: float = 120) -> optuna.Study:
    """The study once the first worker to start has made it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return optuna.load_study(study_name=name, storage=url)
        except (KeyError, Exception):  # noqa: BLE001  (no database or no study yet)
            time.sleep(0.3)
    raise AssertionError(f"study {name} did not appear in {url} within {timeout} s")


def wait_for_running_trial(study: optuna.Study, folder: Path, timeout: float = 180) -> int:
    """The number of a trial that the worker writing into ``folder`` is training right now
    (RUNNING, and its run folder has logged steps: killed mid-trial, not between trials)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run_dir = Path(t.user_attrs.get("run_dir", "/nonexistent"))
            log = run_dir / "metrics.jsonl"
            if run_dir.is_relative_to(folder) and log.is_file() and log.stat().st_size > 0:
                return t.number
        time.sleep(0.1)
    raise AssertionError(f"no trial of {folder} was seen running within {timeout} s")


def check_study(study: optuna.Study, killed: int, count: int = TRIALS) -> optuna.trial.FrozenTrial:
    """The study reached its count, nothing is left RUNNING or WAITING, the killed trial is
    failed and exactly one later try of its configuration completed; returns that try."""
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    states = {t.number: t.state for t in trials}
    assert TrialState.RUNNING not in states.values() and TrialState.WAITING not in states.values()
    assert states[killed] == TrialState.FAIL
    tries = [
        t
        for t in trials
        if killed in (t.system_attrs.get("failed_trial"), t.user_attrs.get("resumes"))
    ]
    assert len(tries) == 1 and tries[0].state == TrialState.COMPLETE, tries
    assert tries[0].params == next(t for t in trials if t.number == killed).params
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == count  # the count is reached: the retry took the dead one's place
    return tries[0]


def test_three_workers_on_postgresql_one_killed_mid_trial(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
):
    # three workers: one process on "machine" m0, and m1 started with --workers 2
    procs = [
        worker(tmp_path, "m0", postgres_url, "pg", "--retries", "1"),
        worker(tmp_path, "m1", postgres_url, "pg", "--retries", "1", "--workers", "2"),
    ]
    study = wait_for_study(postgres_url, "pg-search")
    killed = wait_for_running_trial(study, tmp_path / "m0")
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(timeout=30)
    for proc in procs[1:]:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    retry = check_study(study, killed)
    assert retry.system_attrs.get("failed_trial") == killed  # the heartbeat's retry
    assert not Path(retry.user_attrs["run_dir"]).is_relative_to(tmp_path / "m0")
    # the retry ran on a live machine, in a folder of its own (another machine's is not here)
    assert (Path(retry.user_attrs["run_dir"]) / "summary.json").is_file()
    trained = [t for t in study.get_trials() if "run_dir" in t.user_attrs]  # not the skipped
    m1 = {t.user_attrs["worker"] for t in trained if "/m1/" in t.user_attrs["run_dir"]}
    assert len(m1) == 2  # --workers 2: two processes of m1 took trials
    skipped = [t for t in study.get_trials() if "skipped" in t.user_attrs]
    assert all(t.state == TrialState.FAIL for t in skipped)  # a place taken twice: ended at once
    result = json.loads((tmp_path / "m1" / "search.json").read_text())
    assert result["best"]["value"] == max(
        t.value for t in study.get_trials() if t.state == TrialState.COMPLETE
    )


def test_one_sqlite_worker_killed_then_the_same_command_resumes_its_trial(tmp_path: Path):
    first = worker(tmp_path, "s", None, "lite", trials=3)
    study = wait_for_study(f"sqlite:///{tmp_path / 's' / 'study.db'}", "lite-search")
    killed = wait_for_running_trial(study, tmp_path / "s")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    again = worker(tmp_path, "s", None, "lite", trials=3)  # the same command, no --retries
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    resumed = check_study(study, killed, count=3)
    dead = next(t for t in study.get_trials() if t.number == killed)
    assert resumed.user_attrs["resumes"] == killed  # this machine's dead worker: resumed at once
    assert resumed.user_attrs["run_dir"] == dead.user_attrs["run_dir"]  # in its own folder
    summary = json.loads((Path(resumed.user_attrs["run_dir"]) / "summary.json").read_text())
    assert summary["epochs_run"] == 2
    records = (Path(resumed.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(r)["step"] for r in records if '"loss"' in r]
    assert steps == sorted(set(steps))  # continued from the checkpoint: no step twice
