"""The PostgreSQL test server (tests/postgres_server.py) carries a real multi-process Optuna study.

Worker processes share one study through the server, as ``--storage postgresql://...`` will: two
processes finish 6 trials with distinct numbers, and a worker SIGKILLed in the middle of a trial
leaves a RUNNING trial that ``fail_stale_trials`` marks FAIL once its heartbeat is older than the
grace period, while a live worker's trial is left running. About 10 s with the server installed.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.postgres_server import libpq_url, postgres_url  # noqa: F401  (postgres_url: fixture)

optuna = pytest.importorskip("optuna", reason="optuna is not installed")
psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is not installed (psycopg2-binary)")

HEARTBEAT_S = 1
GRACE_S = 2
WAIT_S = 30  # for a worker to start, finish or be seen; far above what it takes

# A worker: load the shared study and run trials; the objective returns ``x`` after ``sleep_s``.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    import optuna
    url, name, n_trials, sleep_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    storage = optuna.storages.RDBStorage(url, heartbeat_interval={hb}, grace_period={grace})
    study = optuna.load_study(study_name=name, storage=storage)

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        trial.set_user_attr("pid", os.getpid())  # lets the test tell whose trial is whose
        time.sleep(sleep_s)
        return x

    study.optimize(objective, n_trials=n_trials)
    """
).format(hb=HEARTBEAT_S, grace=GRACE_S)


def _storage(url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)


def _worker(url: str, study: str, n_trials: int, sleep_s: float) -> subprocess.Popen:
    """A real worker process (its few log lines stay well inside the pipe's buffer)."""
    args = [sys.executable, "-c", WORKER, url, study, str(n_trials), str(sleep_s)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _output(proc: subprocess.Popen) -> str:
    """The last lines a finished worker printed, for assertion messages."""
    return proc.communicate(timeout=WAIT_S)[0][-2000:]


def _wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll ``check`` until true; a failure names what never happened."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _heartbeat_trial_numbers(url: str, study_name: str) -> set[int]:
    """Numbers of the study's trials that have a heartbeat row on the server (Optuna's
    ``trial_heartbeats`` table): proof that the workers' heartbeat threads write to it."""
    query = (
        "SELECT t.number FROM trial_heartbeats h JOIN trials t ON t.trial_id = h.trial_id"
        " JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = %s"
    )
    with contextlib.closing(psycopg2.connect(libpq_url(url))) as conn, conn.cursor() as cursor:
        cursor.execute(query, (study_name,))
        return {row[0] for row in cursor.fetchall()}


def test_server_is_our_own_loopback_server(postgres_url: str) -> None:  # noqa: F811
    with (
        contextlib.closing(psycopg2.connect(libpq_url(postgres_url))) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(
            "SELECT current_database(), current_setting('port'), current_setting('fsync'),"
            " current_setting('data_directory'), current_setting('max_connections')::int,"
            " inet_server_addr()::text"
        )
        database, port, fsync, data_dir, max_connections, address = cursor.fetchone()
    assert database == "trainlab"
    assert port != "5432" and postgres_url.endswith(f":{port}/trainlab")
    assert fsync == "off"
    assert Path(data_dir).parent.name.startswith("trainlab-pg-")
    assert max_connections >= 50
    assert address == "127.0.0.1/32"


def test_two_processes_share_a_study(postgres_url: str) -> None:  # noqa: F811
    study = optuna.create_study(study_name="shared", storage=_storage(postgres_url))
    workers = [_worker(postgres_url, "shared", 3, 0.0) for _ in range(2)]
    for proc in workers:
        proc.wait(timeout=WAIT_S)
        assert proc.returncode == 0, _output(proc)

    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 6
    assert sorted(t.number for t in trials) == list(range(6))


def test_killed_worker_trial_is_failed_after_grace_period(postgres_url: str) -> None:  # noqa: F811
    study = optuna.create_study(study_name="stale", storage=_storage(postgres_url))
    doomed, alive = (_worker(postgres_url, "stale", 1, 600.0) for _ in range(2))
    running = optuna.trial.TrialState.RUNNING
    try:
        trial_of: dict[int, int] = {}  # worker pid -> its RUNNING trial's number

        def both_beating() -> bool:
            for trial in study.get_trials(deepcopy=False, states=(running,)):
                if "pid" in trial.user_attrs:
                    trial_of[trial.user_attrs["pid"]] = trial.number
            beating = _heartbeat_trial_numbers(postgres_url, "stale")
            return len(trial_of) == 2 and set(trial_of.values()) <= beating

        _wait_for("2 RUNNING trials with a heartbeat on the server", both_beating)
        doomed.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        doomed.wait(timeout=WAIT_S)

        def state(proc: subprocess.Popen) -> optuna.trial.TrialState:
            return study.trials[trial_of[proc.pid]].state

        def doomed_failed() -> bool:
            optuna.storages.fail_stale_trials(study)
            return state(doomed) != running

        _wait_for("fail_stale_trials to fail the killed worker's trial", doomed_failed)
        # Its last heartbeat was about one interval before the kill at most, so it must have
        # stayed RUNNING for about GRACE_S - HEARTBEAT_S after it (half that, for slack).
        assert time.monotonic() - killed_at > (GRACE_S - HEARTBEAT_S) / 2
        assert state(doomed) == optuna.trial.TrialState.FAIL
        assert state(alive) == running  # its heartbeat is fresh: left alone
        assert alive.poll() is None, _output(alive)
    finally:
        for proc in (doomed, alive):
            proc.kill()
            proc.communicate(timeout=WAIT_S)
