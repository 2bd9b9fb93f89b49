"""Places in a stage's count: retries and resumes keep their place, a second try is skipped."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from trainlab.tuning.slots import SKIPPED, claim, place_of, places

X = {"x": FloatDistribution(0, 1)}


def add(study: optuna.Study, state: TrialState, **attrs) -> int:
    system = attrs.pop("system", {})
    values = {"value": 0.5} if state == TrialState.COMPLETE else {}
    study.add_trial(create_trial(state=state, params={"x": 0.5}, distributions=X,
                                 user_attrs=attrs, system_attrs=system, **values))  # fmt: skip
    return study.get_trials()[-1].number


def test_tries_of_one_configuration_hold_one_place() -> None:
    study = optuna.create_study()
    a = add(study, TrialState.COMPLETE)
    dead = add(study, TrialState.FAIL)
    retry = add(study, TrialState.COMPLETE, system={"failed_trial": dead})
    stopped = add(study, TrialState.FAIL, interrupted=True)
    resume = add(study, TrialState.RUNNING, resumes=stopped)
    trials = study.get_trials()
    assert [place_of(t) for t in trials] == [a, dead, dead, stopped, stopped]
    assert places(trials) == [a, dead, stopped]
    skipped = add(study, TrialState.FAIL, **{SKIPPED: "late"})
    assert places(study.get_trials()) == [a, dead, stopped] and skipped not in places(trials)
    assert resume and retry


def test_a_second_resume_of_one_place_and_a_place_past_the_count_are_skipped() -> None:
    study = optuna.create_study()
    first = add(study, TrialState.COMPLETE)
    stopped = add(study, TrialState.FAIL, interrupted=True)
    one = add(study, TrialState.RUNNING, resumes=stopped)
    two = add(study, TrialState.RUNNING, resumes=stopped)  # two workers queued it at once
    new = add(study, TrialState.RUNNING)
    trials = study.get_trials()
    assert claim(trials, one, 3) is None
    assert claim(trials, two, 3) == f"trial {one} already continues trial {stopped}"
    assert claim(trials, new, 3) is None  # the third place
    assert claim(trials, new, 2) == "the stage already has its 2 trials"
    assert first == 0
