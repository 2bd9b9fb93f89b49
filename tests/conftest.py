"""Shared fixtures: a tiny synthetic dataset on disk and a helper to run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Under pytest-xdist each worker gets one of the two cores: torch's default of one thread per
# core would oversubscribe them, and spinning OpenMP threads then slow every test tenfold.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the CLI subprocesses

QUICK = ["training.epochs=2", "training.progress=false"]


@pytest.fixture
def blobs_npz(tmp_path: Path) -> Path:
    """Two well-separated gaussian blobs in 4-D (600 rows): any sane recipe learns them."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    x = rng.normal(0, 1, (600, 4)).astype(np.float32) + 3.0 * y[:, None]
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``trainlab ARGS`` in a real subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "trainlab.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def run_cli_imports(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``trainlab ARGS`` in a subprocess under ``-X importtime``: the result and the names of
    every module it imported (what start-up costs)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trainlab.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, {line.split("|")[-1].strip() for line in done.stderr.splitlines()}


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])
