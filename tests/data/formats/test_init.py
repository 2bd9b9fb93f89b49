"""The package trainlab.data.formats: importing it registers every reader's dataset."""

from __future__ import annotations

from trainlab.data.datasets import DATASETS


def test_all_formats_registered() -> None:
    for name in ("npz", "npy", "csv", "idx", "cifar10", "imagefolder"):
        assert name in DATASETS
        assert DATASETS.get(name).summary  # first docstring line is the listing summary
