"""Real processes: train in a subprocess, SIGKILL it at random moments (often during a checkpoint
save, since one is written every step), resume, and compare with an uninterrupted run byte for
byte. The kill points are random and printed (pytest -s, or shown on failure)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RECIPE = [
    "model.name=mlp",
    "model.widths=[64]",
    "model.dropout=0.1",
    "model.norm=none",  # dropout with batch norm warns, and stderr must be one line
    "preprocess.name=per_channel",  # standardize is refused beside random_crop
    "augment=[{name: random_crop, padding: 1}]",
    "training.epochs=5",
    "training.batch_size=32",
    "training.checkpoint_every_steps=1",
    "training.log_every=7",
    "training.progress=false",
]


def _start(out: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "trainlab.cli", "train", *RECIPE, "--out", str(out)]
    return subprocess.Popen(
        args + (["--resume"] if resume else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pointer(out: Path) -> str | None:
    try:
        return (out / "checkpoints" / "last").read_text()
    except OSError:
        return None


def _wait_for_new_checkpoint(proc: subprocess.Popen, out: Path, old: str | None) -> bool:
    """Until the process writes a checkpoint other than ``old``; False if it exits first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        now = _pointer(out)
        if now is not None and now != old:
            return True
        time.sleep(0.01)
    raise AssertionError("no checkpoint written within 120 s")


def _log(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "samples_per_s"} for x in lines]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = _start(out, resume=False)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def _same_result(run: Path, reference: Path) -> None:
    assert (run / "model.safetensors").read_bytes() == (
        reference / "model.safetensors"
    ).read_bytes()
    assert _log(run) == _log(reference)  # no gap and no duplicate step in the metrics log
    ours, theirs = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    assert ours["test_loss"] == theirs["test_loss"] and ours["steps"] == theirs["steps"]


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path: Path, reference: Path):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    out = tmp_path / "killed"
    kills: list[str] = []
    proc, old = _start(out, resume=False), None
    while len(kills) < 3:
        if not _wait_for_new_checkpoint(proc, out, old):
            break  # finished before the next kill
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        old = _pointer(out)
        saving = any(p.name.startswith(".") for p in (out / "checkpoints").iterdir())
        kills.append(f"{old}{' (during a save)' if saving else ''}")
        proc = _start(out, resume=True)
    _, err = proc.communicate(timeout=300)
    print(f"random seed {seed}; killed with these last checkpoints: {kills}")
    assert proc.returncode == 0, err
    assert len(kills) >= 3, f"only {len(kills)} kill points landed (seed {seed}): {kills}"
    _same_result(out, reference)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130)])  # SIGTERM: test_crash_anywhere
def test_ctrl_c_stops_with_a_checkpoint_and_resumes_exactly(
    tmp_path: Path, reference: Path, sig: int, code: int
):
    out = tmp_path / "stopped"
    proc = _start(out, resume=False)
    assert _wait_for_new_checkpoint(proc, out, None)
    time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert f"resume with: trainlab train --out {out} --resume" in lines[0]
    resumed = _start(out, resume=True)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    _same_result(out, reference)


def test_a_second_sigterm_during_the_save_leaves_a_complete_checkpoint(
    tmp_path: Path, reference: Path
):
    out = tmp_path / "twice"
    proc = _start(out, resume=False)
    assert _wait_for_new_checkpoint(proc, out, None)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.005)  # the first one asked for a checkpoint; this one lands during or after it
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    resumed = _start(out, resume=True)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    _same_result(out, reference)
