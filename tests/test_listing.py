"""``trainlab list`` reads the shipped catalogue (no torch import); the catalogue is the live
registries, so it cannot drift."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import last_json, run_cli_imports
from trainlab.listing import live_catalog, shipped_catalog


def test_the_shipped_catalog_is_the_live_registries():
    assert shipped_catalog() == live_catalog(), (
        "src/trainlab/catalog.json is stale: regenerate it with `python -m trainlab.listing`"
    )


def test_list_imports_no_torch_and_prints_the_catalog():
    done, imported = run_cli_imports("list", "--json")
    assert done.returncode == 0, done.stderr
    assert "torch" not in imported and "numpy" not in imported
    assert last_json(done.stdout) == shipped_catalog()["components"]
    one = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", "list", "optimiser"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert one.returncode == 2 and "did you mean 'optimizer'?" in one.stderr
