"""One coherent story: symptoms follow from the most upstream cause, direct causes are never
explained away, contradicting lr verdicts are settled by the range test, and no fix repeats
what the recipe already has."""

from __future__ import annotations

import pytest

import trainlab
from trainlab.diagnosis.findings import CAUSES, Finding
from trainlab.diagnosis.story import reconcile, root_findings, useful_fixes


@pytest.fixture(scope="module")
def recipe():
    return trainlab.resolve_recipe(None, ["model.init=zeros"])


def _f(check: str, status: str, cause: str = "", fix: tuple[str, ...] = ()) -> Finding:
    return Finding(check, status, f"{check} measured", f"{check} advice", cause=cause, fix=fix)


def test_a_symmetric_init_explains_both_lr_verdicts(recipe):
    """The issue's case: all-zero weights made the layers check say "lr far too high" and the
    overfit check "lr too low"; both follow from the symmetric units."""
    findings = [
        _f("layers.symmetry", "fail", "init.symmetric", ("model.init=kaiming_normal",)),
        _f("layers.gradients", "fail", "lr.high", ("optimizer.lr=0.0003",)),
        _f("overfit", "fail", "lr.low", ("optimizer.lr=0.03",)),
        _f("data.balance", "ok"),
    ]
    told = reconcile(findings, recipe)
    assert [f.status for f in told] == ["fail", "fail", "fail", "ok"]  # statuses are kept
    assert told[0].fix == ("model.init=kaiming_normal",)
    for f in told[1:3]:
        assert f.advice.startswith("follows from layers.symmetry: ") and f.fix == ()
        assert f.values["explained_by"] == "layers.symmetry"
    assert [f.check for f in root_findings(told)] == ["layers.symmetry"]


def test_direct_causes_are_never_explained_away(recipe):
    findings = [
        _f("data.pipeline", "fail", "data.pipeline", ("preprocess.name=per_channel",)),
        _f("initial_loss", "fail", "model.output"),
        _f("overfit", "fail", "capacity", ("model.channels=[64, 128]",)),
    ]
    told = reconcile(findings, recipe)
    assert told[1].advice == "initial_loss advice"  # a second, independent fault
    assert told[2].values["explained_by"] == "data.pipeline"
    assert [f.check for f in root_findings(told)] == ["data.pipeline", "initial_loss"]


def test_the_range_test_settles_contradicting_lr_verdicts(recipe):
    findings = [
        _f("layers.gradients", "warn", "lr.high", ("optimizer.lr=0.0003",)),
        _f("lr_range", "warn", "lr.low", ("optimizer.lr=0.03",)),
    ]
    told = reconcile(findings, recipe)
    assert told[0].values["contradicted_by"] == "lr_range" and told[0].fix == ()
    assert told[1].fix == ("optimizer.lr=0.03",)


def test_a_warning_does_not_explain_a_failure(recipe):
    """The root is the most upstream FAILING cause; a warning roots only among warnings, and
    an upstream symptom is not explained by a downstream root."""
    findings = [
        _f("layers.activations", "warn", "units.dead"),
        _f("lr_range", "fail", "lr.high", ("optimizer.lr=0.0003",)),
    ]
    told = reconcile(findings, recipe)
    assert told == findings
    warned = reconcile([findings[0], _f("curves", "warn", "lr.low")], recipe)
    assert warned[1].values["explained_by"] == "layers.activations"


def test_a_fix_the_recipe_already_has_is_dropped(recipe):
    assert useful_fixes(recipe, ("model.init=zeros", "optimizer.lr=0.01")) == ("optimizer.lr=0.01",)
    assert useful_fixes(recipe, ("model.nonsense=1",)) == ()
    told = reconcile([_f("layers.symmetry", "fail", "init.symmetric", ("model.init=zeros",))],
                     recipe)  # fmt: skip
    assert told[0].fix == ()


def test_every_cause_has_a_rank_and_words():
    from trainlab.diagnosis.findings import CAUSE_TEXT, DIRECT_CAUSES

    assert set(CAUSE_TEXT) == set(CAUSES) and set(CAUSES) >= DIRECT_CAUSES
    with pytest.raises(ValueError, match="unknown cause"):
        Finding("x", "fail", "s", cause="lr.toohigh")


def test_findings_of_one_cause_share_the_most_direct_fix_and_say_so(recipe):
    """lr 1: the overfit check's "10x lower" and the range test's suggestion were two numbers
    for one cause; the range test measured it, so its value is the one in every finding."""
    told = reconcile(
        [
            _f("overfit", "fail", "lr.high", ("optimizer.lr=0.1",)),
            _f("lr_range", "warn", "lr.high", ("optimizer.lr=0.014",)),
        ],
        recipe,
    )
    assert [f.fix for f in told] == [("optimizer.lr=0.014",)] * 2
    assert told[0].advice == (
        "the learning rate is too high: optimizer.lr=0.014 (the value lr_range measured)"
    )
    assert told[0].values["own_fix"] == ["optimizer.lr=0.1"] and told[1].advice == "lr_range advice"
