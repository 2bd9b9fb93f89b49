"""One writer per run folder: the second process is refused naming the first; a dead holder's
lock is taken over with a warning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trainlab
from trainlab.engine.lock import LOCK_NAME, RunLock
from trainlab.errors import RunFolderError, TrainlabWarning

SLOW = [  # long enough to be caught mid-run: ~100 steps a second here
    "model.name=mlp",
    "model.widths=[64]",
    "model.norm=none",
    "augment=[]",
    "training.epochs=200",
    "training.batch_size=16",
    "training.checkpoint_every_steps=50",
    "training.progress=false",
]
FAST = ["training.progress=false", "model.name=mlp", "model.widths=[16]", "augment=[]"]
ONE_EPOCH = [*FAST, "training.epochs=1", "schedule.warmup_epochs=0"]


def test_a_second_lock_on_the_same_folder_is_refused_naming_the_holder(tmp_path: Path):
    with RunLock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(RunFolderError, match=f"pid {os.getpid()} is training in this"):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released: free again
        pass


def test_two_processes_on_one_run_folder_the_second_exits_2_naming_the_first(tmp_path: Path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainlab.cli", "train", *SLOW, "--out", str(run)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last").is_file():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        second = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert f"pid {first.pid} is training in this run folder" in lines[0]
        assert first.poll() is None  # the first one goes on undisturbed
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143, err
    log = (run / "metrics.jsonl").read_text().splitlines()
    assert log and all(line.startswith("{") for line in log)


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path: Path):
    run = tmp_path / "run"
    trainlab.train(None, ONE_EPOCH, out=run, progress=False)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / LOCK_NAME).write_text(f"{dead.pid}\n")
    with pytest.warns(TrainlabWarning, match=f"taking over the lock of pid {dead.pid}"):
        trainlab.train(None, out=run, resume=True, progress=False)
    assert (run / LOCK_NAME).read_text() == ""  # released at the end


def test_a_fresh_trainer_never_trains_over_another_runs_checkpoints(tmp_path: Path):
    """Two fresh runs set up on one empty --out: the second to take the lock finds the first's
    checkpoints and refuses instead of overwriting them."""
    from trainlab.engine.build import build
    from trainlab.engine.loop import Trainer

    run = tmp_path / "run"
    recipe = trainlab.resolve_recipe(None, ONE_EPOCH)
    late = Trainer(build(recipe), run, progress=False)  # set up while the folder was empty
    trainlab.train(recipe, out=run, progress=False)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(RunFolderError, match="holds a checkpoint of another run"):
        late.fit()
    assert (run / "model.safetensors").read_bytes() == before
    assert not late.lock.held
