"""Where an SGDR run's snapshots are taken: at the lr minimum of each complete cycle."""

from __future__ import annotations

import trainlab
from trainlab.engine.build import build_schedule
from trainlab.engine.snapshots import snapshot_steps


def _recipe(*overrides: str):
    return trainlab.resolve_recipe(None, ["schedule.name=sgdr", *overrides])


def test_cycle_ends_follow_warmup_and_the_period_multiplier():
    recipe = _recipe(
        "schedule.period_epochs=1", "schedule.period_mult=2", "schedule.warmup_steps=3"
    )
    assert snapshot_steps(recipe, 10, 100) == [13, 33, 73]  # cycles of 10, 20, 40 after 3
    assert snapshot_steps(_recipe("schedule.warmup_epochs=0"), 5, 50) == [50]  # default 10 epochs


def test_each_snapshot_step_is_the_last_step_before_a_restart():
    recipe = _recipe("schedule.period_epochs=2", "schedule.warmup_epochs=0")
    lr = build_schedule(recipe, 0.1, 7, 70)
    ends = snapshot_steps(recipe, 7, 70)
    assert ends == [14, 28, 42, 56, 70]
    for start, end in zip([0, *ends], ends, strict=False):  # step `end` is the first after
        assert lr(end - 1) == min(lr(t) for t in range(start, end)) < 0.01
        if end < 70:
            assert lr(end) == 0.1  # restarted
