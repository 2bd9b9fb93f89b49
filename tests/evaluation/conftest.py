"""Tiny trained runs shared by the test-time augmentation and MC-dropout tests (trained once)."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainlab


@pytest.fixture(scope="session")
def digits_dropout_run(tmp_path_factory) -> Path:
    """The default recipe (8x8 digits convnet) with dropout before its classifier, 2 epochs."""
    run = tmp_path_factory.mktemp("tta") / "digits"
    overrides = ["training.epochs=2", "training.progress=false", "model.dropout=0.3"]
    trainlab.train(None, overrides, out=run, progress=False)
    return run


@pytest.fixture(scope="session")
def mnist1d_fmp_run(tmp_path_factory) -> Path:
    """The MNIST-1D recipe, narrowed, with fractional max pooling and dropout, 2 epochs."""
    run = tmp_path_factory.mktemp("tta") / "mnist1d"
    overrides = [
        "training.epochs=2", "schedule.warmup_epochs=0", "training.progress=false",
        "model.channels=[8,16]", "model.depth=1", "model.pool=fractional", "model.dropout=0.2",
    ]  # fmt: skip
    trainlab.train("mnist1d", overrides, out=run, progress=False)
    return run
