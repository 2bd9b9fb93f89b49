"""Fixtures of the dataset-reader tests: every test gets its own image cache folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that do not set data.cache_dir must not write into the user's ~/.cache."""
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "trainlab-cache"))
