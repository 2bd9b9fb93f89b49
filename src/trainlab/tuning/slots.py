"""Places in a stage's count: one per configuration tried, however many tries it took.

A stage of N trials has N places. A trial that is tried again keeps its place: a retry of a
dead worker's trial (Optuna's heartbeat callback records the first try in ``failed_trial``) and
the resume of an interrupted one (``resumes``) belong to the place of the trial they continue.
Workers check the count and then ask Optuna for a trial, so two workers can ask for the last
place at once, or both queue the same interrupted trial again; the trial that comes second is
told so when it starts (``claim``) and ends at once, marked ``skipped`` with the reason, without
a run folder: it holds no place and trains nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.trial import TrialState

__all__ = ["place_of", "places", "claim", "SKIPPED"]

SKIPPED = "skipped"  # the user attribute that marks a trial that ended at once (see claim)
HOLDING = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING)


def place_of(trial: Any) -> int:
    """The number of the first try of the configuration ``trial`` runs."""
    if "resumes" in trial.user_attrs:
        return int(trial.user_attrs["resumes"])
    return int(trial.system_attrs.get("failed_trial", trial.number))


def places(trials: Sequence[Any]) -> list[int]:
    """The places the trials hold, in the order they were first tried."""
    return sorted({place_of(t) for t in trials if SKIPPED not in t.user_attrs})


def claim(trials: Sequence[Any], number: int, count: int) -> str | None:
    """Why trial ``number`` must not run (None: it may): another live try of its place started
    first, or it is a new place beyond the stage's ``count``."""
    me = next(t for t in trials if t.number == number)
    mine = place_of(me)
    earlier = [t for t in trials if t.number < number and SKIPPED not in t.user_attrs]
    twin = next((t for t in earlier if place_of(t) == mine and t.state in HOLDING), None)
    if twin is not None and mine != number:
        return f"trial {twin.number} already continues trial {mine}"
    if mine == number and len(places(earlier)) >= count:
        return f"the stage already has its {count} trials"
    return None
