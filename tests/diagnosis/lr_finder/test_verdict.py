"""The doctor's finding for a range test (trainlab.diagnosis.lr_finder.verdict): the rule's
failure and the recipe's own lr judged against the sweep."""

from __future__ import annotations

import trainlab
from trainlab.diagnosis.lr_finder import check_lr, lr_range_test


def test_a_suggestion_failing_the_rule_is_a_warning(healthy):
    import dataclasses

    slow = [{"lr": healthy.suggestion, "steps": 100, "final_loss": 2.0, "diverged": False,
             "passed": False}]  # fmt: skip
    failed = dataclasses.replace(healthy, rule_lr=None, rule_trials=tuple(slow))
    finding = check_lr(failed)
    assert finding.status == "warn" and "does not pass the lecture's rule" in finding.advice
    assert "no lr tried" in finding.summary
    assert check_lr(healthy).status == "ok"


def test_the_recipes_own_lr_is_judged_against_the_sweep():
    recipe = trainlab.resolve_recipe(
        None, ["training.progress=false", "model.name=mlp", "model.widths=[64]"]
    )
    sweep = lr_range_test(recipe, steps=40, seeds=(0,), rule_iters=0)
    assert sweep.suggestion is not None
    assert check_lr(sweep, current_lr=sweep.suggestion).status == "ok"
    too_high = check_lr(sweep, current_lr=10.0)
    assert too_high.status == "fail" and "decades above the suggestion" in too_high.advice
    assert check_lr(sweep, current_lr=sweep.suggestion / 100).status == "warn"
