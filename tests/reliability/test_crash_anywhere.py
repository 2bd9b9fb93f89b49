"""Crash at any moment, re-run the same command with --resume: the run ends as if never stopped.

Real processes: ``kill_at.py`` runs the CLI and sends itself a real SIGKILL or SIGTERM at one
exact moment (before the first checkpoint, during the final step, at each point of the final
epoch's end, during the test evaluation); the same ``trainlab train ... --resume`` command then
finishes the run, and its weights, metrics log, summary and best checkpoint must equal those
of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.small_disk import fill, small_disk

KILL_AT = Path(__file__).with_name("kill_at.py")
# 2 epochs of 10 steps (1,294 training digits, batches of 128), a 'last' checkpoint every 5
RECIPE = [
    "model.name=mlp",
    "model.widths=[32]",
    "model.dropout=0.1",
    "model.norm=none",
    "augment=[{name: random_crop, padding: 1}]",
    "training.epochs=2",
    "training.batch_size=128",
    "training.checkpoint_every_steps=5",
    "training.log_every=3",
    "schedule.warmup_epochs=0",
    "training.progress=false",
]
STEPS = 20

LOOP, CALLBACKS = "trainlab.engine.loop", "trainlab.engine.callbacks"
BATCH_END = f"{CALLBACKS}:Checkpointer.on_batch_end"
MOMENTS = {  # name: (KILL_AT spec, exit code of the stopped process)
    "after a logged record, no checkpoint": (f"{CALLBACKS}:MetricsLog.on_log:after:1:KILL", -9),
    "SIGTERM during the final step": ("trainlab.engine.step:Step.__call__:before:20:TERM", 143),
    "after the final step's checkpoint": (f"{BATCH_END}:after:20:KILL", -9),
    "after the final validation record": (f"{CALLBACKS}:MetricsLog.on_eval_end:after:2:KILL", -9),
    "after the final best checkpoint": (f"{CALLBACKS}:Checkpointer.on_eval_end:after:2:KILL", -9),
    "after the final last checkpoint": (f"{CALLBACKS}:Checkpointer.on_epoch_end:after:2:KILL", -9),
    "during the test evaluation": (f"{LOOP}:Trainer.evaluate_split:before:3:KILL", -9),
}


def _train(out: Path, *, resume: bool = False, kill_at: str | None = None):
    script = [str(KILL_AT)] if kill_at else ["-m", "trainlab.cli"]
    args = [sys.executable, *script, "train", *RECIPE, "--out", str(out)]
    env = {**os.environ, **({"KILL_AT": kill_at} if kill_at else {})}
    return subprocess.run(
        args + (["--resume"] if resume else []), env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def _log(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "samples_per_s"} for x in lines]


SAME = ("test_loss", "test_acc", "val", "best_epoch", "epochs_run", "steps", "stop_reason")


def _outcome(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    best = (run / "checkpoints" / "best").read_text()
    return {
        "weights": (run / "model.safetensors").read_bytes(),
        "log": _log(run),
        "summary": {k: summary[k] for k in SAME},
        "best": best,
        "best_weights": (run / "checkpoints" / best / "model.safetensors").read_bytes(),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference") / "run"
    done = _train(out)
    assert done.returncode == 0, done.stderr
    outcome = _outcome(out)
    assert outcome["summary"]["steps"] == STEPS and outcome["summary"]["epochs_run"] == 2
    return outcome


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_crash_at_this_moment_then_the_same_command_with_resume_finishes_the_run(
    tmp_path: Path, reference: dict, moment: str
):
    spec, code = MOMENTS[moment]
    out = tmp_path / "run"
    stopped = _train(out, kill_at=spec)
    assert stopped.returncode == code, stopped.stderr
    if code == 143:  # SIGTERM: stopped at the step boundary with a checkpoint, said in one line
        assert f"resume with: trainlab train --out {out} --resume" in stopped.stderr
    resumed = _train(out, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    if "no checkpoint" in moment:
        assert "no checkpoint yet; starting from step 0" in resumed.stderr
    else:  # the epoch lines say where it continues
        left = "final" in moment and "last checkpoint" in moment or "test" in moment
        said = ": training is done; finishing the run" if left else r" \(epoch \d of 2\)"
        assert re.search(rf"^resuming from step \d+ of 20{said}", resumed.stderr, re.M)
    assert _outcome(out) == reference
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_resume_on_a_folder_that_does_not_exist_starts_the_run(tmp_path: Path, reference: dict):
    out = tmp_path / "new"
    done = _train(out, resume=True)
    assert done.returncode == 0, done.stderr
    said = f"trainlab: warning: {out}: no checkpoint yet; starting from step 0"
    assert done.stderr.splitlines().count(said) == 1
    assert _outcome(out) == reference


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path: Path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "train.csv").write_text("a,b\n")
    done = _train(out, resume=True)
    assert done.returncode == 2
    assert "not a run folder" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["train.csv"]


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(
    tmp_path: Path, reference: dict
):
    with small_disk(tmp_path, "16m") as disk:
        out = disk / "run"
        stopped = _train(out, kill_at=f"{BATCH_END}:after:10:KILL")
        assert stopped.returncode == -9, stopped.stderr
        ballast = fill(disk)
        full = _train(out, resume=True)
        assert full.returncode == 1, full.stderr
        errors = [line for line in full.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "Traceback" not in full.stderr, full.stderr
        assert "no space left on device" in errors[0] and str(out) in errors[0]
        assert [p for p in out.rglob("*") if ".tmp-" in p.name] == []
        ballast.unlink()
        resumed = _train(out, resume=True)
        assert resumed.returncode == 0, resumed.stderr
        assert _outcome(out) == reference
