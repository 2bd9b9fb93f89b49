"""Fixtures of the lr range test's tests: one healthy three-seed sweep, shared by the files (it is
frozen; tests derive variants with ``dataclasses.replace``)."""

from __future__ import annotations

import pytest

from tests.diagnosis.lr_finder.lr_finder_util import digits
from trainlab.diagnosis.lr_finder import lr_range_test


@pytest.fixture(scope="session")
def healthy():
    """The default data with an MLP: three seeds, the 100-iteration rule included."""
    return lr_range_test(digits(), steps=100, seeds=(0, 1, 2))
