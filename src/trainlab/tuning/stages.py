"""The stages of a search: coarse (many short trials) then fine (narrowed ranges, trained longer).

Lecture 002's steps 4 and 5: "coarse grid, train for ~1-5 epochs", then "refine grid, train
longer". A stage is ``TRIALSxEPOCHS`` on the command line (``--stages 24x3:8x20``) or a name
defined in the space file's ``stages:`` (``--stages coarse:fine``), where each entry takes
``trials``, ``epochs`` (default: the recipe's), ``top`` (the fraction of the previous stage's
complete trials a later stage narrows around, default 0.25, at least 2 trials) and ``margin``
(how far the narrowed range is widened, as a fraction of its span, default 0.5). Without
``--stages``, a space file's stages run in order; without either, one stage of ``--trials``.

A stage shorter than the recipe keeps the recipe's warm-up as the same fraction of the run
(a 2-epoch warm-up of a 40-epoch recipe is 0.1 epochs in a 2-epoch trial), so every stage is
the recipe's own schedule compressed, and a stage at the recipe's length is the recipe itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainlab.errors import RecipeError
from trainlab.recipe import Recipe

__all__ = ["Stage", "parse_stages", "stage_overrides"]

DEFAULT_TOP, DEFAULT_MARGIN = 0.25, 0.5
_INLINE = re.compile(r"^(\d+)x(\d+)$")
_KEYS = {"trials", "epochs", "top", "margin"}


@dataclass(frozen=True)
class Stage:
    """One stage: its name, how many trials, how long each trains (None: the recipe's epochs)."""

    name: str
    trials: int
    epochs: int | None = None
    top: float = DEFAULT_TOP
    margin: float = DEFAULT_MARGIN

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "trials": self.trials, "epochs": self.epochs,
                "top": self.top, "margin": self.margin}  # fmt: skip


def parse_stages(
    spec: str | None, defined: Mapping[str, Mapping[str, Any]], trials: int | None, source: str
) -> list[Stage]:
    """The stages to run, from ``--stages`` (or the space file's, or one of ``--trials``)."""
    if spec and trials is not None:
        raise RecipeError("give --trials or --stages, not both (a stage names its own trials)")
    if not spec:
        if defined and trials is None:
            return [_defined(name, entry, source) for name, entry in defined.items()]
        return [Stage("search", trials if trials is not None else 20)]
    stages = []
    for i, token in enumerate(t.strip() for t in spec.split(":")):
        if match := _INLINE.match(token):
            name = ("coarse", "fine")[i] if i < 2 else f"stage{i + 1}"
            stages.append(Stage(name, int(match[1]), int(match[2])))
        elif token in defined:
            stages.append(_defined(token, defined[token], source))
        else:
            names = ", ".join(defined) or "none in the space file"
            raise RecipeError(
                f"--stages {spec}: {token!r} is neither TRIALSxEPOCHS (e.g. 24x3) nor a stage "
                f"of {source} (defined: {names})"
            )
    if len({s.name for s in stages}) != len(stages):
        raise RecipeError(f"--stages {spec}: a stage is named twice")
    for stage in stages:
        if stage.trials < 1 or (stage.epochs is not None and stage.epochs < 1):
            raise RecipeError(f"--stages {spec}: {stage.name} needs at least 1 trial and 1 epoch")
    return stages


def _defined(name: str, entry: Mapping[str, Any], source: str) -> Stage:
    unknown = set(entry) - _KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise RecipeError(f"{source}: stages.{name}.{key}: unknown key; valid: {sorted(_KEYS)}")
    trials, epochs = entry.get("trials"), entry.get("epochs")
    if not _whole(trials) or trials < 1:
        raise RecipeError(f"{source}: stages.{name}.trials: expected a whole number >= 1")
    if epochs is not None and (not _whole(epochs) or epochs < 1):
        raise RecipeError(f"{source}: stages.{name}.epochs: expected a whole number >= 1")
    top, margin = entry.get("top", DEFAULT_TOP), entry.get("margin", DEFAULT_MARGIN)
    if not isinstance(top, int | float) or not 0 < top <= 1:
        raise RecipeError(f"{source}: stages.{name}.top: expected a fraction in (0, 1]")
    if not isinstance(margin, int | float) or margin < 0:
        raise RecipeError(f"{source}: stages.{name}.margin: expected a number >= 0")
    return Stage(name, trials, epochs, float(top), float(margin))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def stage_overrides(recipe: Recipe, stage: Stage) -> dict[str, Any]:
    """The recipe overrides that make ``recipe`` a trial of ``stage`` (its length, the warm-up
    kept as the same fraction of the run); empty at the recipe's own length."""
    epochs = recipe.training.epochs
    if stage.epochs is None or stage.epochs == epochs:
        return {}
    out: dict[str, Any] = {"training.epochs": stage.epochs}
    warmup = recipe.schedule.warmup_epochs
    if warmup:
        out["schedule.warmup_epochs"] = round(warmup * stage.epochs / epochs, 4)
    return out
