"""Helpers shared by the lr range test's tests: the digits recipe with an MLP."""

from __future__ import annotations

import trainlab

MLP = ["model.name=mlp", "training.progress=false"]


def digits(*overrides: str) -> trainlab.Recipe:
    return trainlab.resolve_recipe(None, [*MLP, *overrides])
