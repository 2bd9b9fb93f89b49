"""``trainlab list technique``: every listed recipe line is valid and builds a runnable trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainlab
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer
from trainlab.techniques import TECHNIQUES


@pytest.mark.parametrize("technique", TECHNIQUES, ids=lambda t: t.name)
def test_each_technique_line_is_a_valid_recipe_override(technique, tmp_path: Path):
    overrides = ["training.progress=false", *technique.overrides]
    recipe = trainlab.resolve_recipe(None, overrides)
    for line in technique.overrides:
        key, _, _ = line.partition("=")
        section, _, field = key.partition(".")
        if field == "name":  # choosing the model the technique applies to
            continue
        default = getattr(trainlab.resolve_recipe(None, []), section)
        changed = getattr(recipe, section)
        assert getattr(changed, field) != getattr(default, field), line  # it changes something
    Trainer(build(recipe), tmp_path / "run", progress=False)  # builds and runs the forward check
