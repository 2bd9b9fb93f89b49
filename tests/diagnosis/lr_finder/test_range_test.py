"""The lr range test (doctor check 3, trainlab.diagnosis.lr_finder.range_test) on recipes built
to pass and to fail it: narrowed seeds, "no descent" confirmed longer, the global state kept."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import trainlab
from tests.diagnosis.lr_finder.lr_finder_util import digits
from trainlab.diagnosis.lr_finder import check_lr, lr_range_test


def test_healthy_recipe_gets_a_sane_suggestion(healthy):
    assert healthy.shape == "ok"
    assert 1e-4 <= healthy.suggestion <= 1.0
    lo, hi = healthy.steepest_range
    assert 1e-5 <= lo <= hi <= 1.0
    low, high = healthy.spread
    assert low <= healthy.suggestion <= high
    assert healthy.spread_decades <= 1.0
    assert len(healthy.seeds) == 3 and all(s.drop > 0.1 for s in healthy.seeds)
    # the lecture's rule: some decade lr makes the loss fall clearly within 100 steps
    assert healthy.rule_lr is not None and 1e-4 <= healthy.rule_lr <= 1.0
    assert healthy.rule_trials[0]["lr"] == healthy.suggestion  # asked of the suggestion first
    passed = [t for t in healthy.rule_trials if t["passed"]]
    assert passed and passed[0]["lr"] == healthy.rule_lr and passed[0]["steps"] <= 100
    finding = check_lr(healthy, "lr_range.png")
    assert finding.check == "lr_range" and finding.status == "ok"
    assert finding.figures == ("lr_range.png",)
    assert finding.values["suggested_lr"] == healthy.suggestion
    assert "\n" not in finding.summary


def test_later_seeds_start_three_decades_below_the_first_minimum(healthy):
    first, *rest = healthy.seeds
    assert first.stop == "end" and len(first.lrs) == 100  # the whole grid
    for s in rest:
        assert len(s.lrs) < 80
        assert np.allclose(s.lrs, first.lrs[len(first.lrs) - len(s.lrs) :])  # the same grid
        assert 2.9 < math.log10(first.min_lr / s.lrs[0]) <= 3.0


def test_narrowed_seeds_agree_with_full_sweeps(healthy):
    full = lr_range_test(digits(), steps=100, seeds=(0, 1, 2), narrow=None, rule_iters=0)
    assert full.shape == healthy.shape == "ok"
    assert all(len(s.lrs) == 100 for s in full.seeds)
    assert abs(math.log10(full.suggestion / healthy.suggestion)) < 0.5


def test_a_narrowed_seed_that_blows_up_is_swept_again_in_full(monkeypatch):
    """Seeds 2 and 3 forced to start at lr ~1 (where digits diverges): each is swept again from
    min_lr, so the shape is judged on the whole range as before narrowing."""
    from trainlab.diagnosis.lr_finder import range_test

    monkeypatch.setattr(range_test, "_start_index", lambda lrs, first, narrow: len(lrs) - 12)
    sweep = lr_range_test(digits(), steps=100, seeds=(0, 1, 2), rule_iters=0)
    assert [len(s.lrs) for s in sweep.seeds] == [100, 100, 100]
    assert all(s.lrs[0] == pytest.approx(1e-7) for s in sweep.seeds)
    assert sweep.shape == "ok"


def test_rule_iters_below_its_window_is_refused():
    with pytest.raises(ValueError, match="rule_iters=5"):
        lr_range_test(digits(), steps=20, seeds=(0,), rule_iters=5)


def test_an_lr_of_10_diverges_at_once():
    sweep = lr_range_test(digits(), min_lr=10, max_lr=1000, steps=30, seeds=(0, 1), rule_iters=0)
    assert sweep.shape == "diverges_at_once"
    assert sweep.suggestion is None
    assert all(s.stop != "end" and len(s.losses) <= 5 for s in sweep.seeds)
    finding = check_lr(sweep)
    assert finding.status == "fail" and "diverges at once" in finding.summary
    assert "min_lr" in finding.advice


@pytest.fixture
def shuffled_digits(tmp_path: Path) -> Path:
    """Digits with the labels permuted: nothing about the inputs predicts them."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    y = np.random.default_rng(0).permutation(y)
    path = tmp_path / "shuffled.npz"
    np.savez(path, x=x.astype(np.float32), y=y)
    return path


def test_labels_unrelated_to_inputs_show_no_descent(shuffled_digits: Path):
    recipe = digits(f"data={{name: npz, path: '{shuffled_digits}'}}", "augment=[]")
    sweep = lr_range_test(recipe, steps=60, seeds=(0, 1), rule_iters=0)
    assert sweep.shape == "no_descent", [s.drop for s in sweep.seeds]
    assert sweep.steps == 180 and sweep.extra["lengthened_from"] == 60  # confirmed, longer
    finding = check_lr(sweep)
    assert finding.status == "fail" and "no descent" in finding.summary
    assert "at 60, the first at 180 steps" in finding.summary
    assert "labels" in finding.advice


def test_a_slow_start_is_confirmed_with_a_longer_sweep_not_failed():
    """Group norm on digits: 7% below the class prior in 100 steps, 57-66% in 300; it trains
    to 98.6% with the recipe. The longer sweep's reading stands."""
    sweep = lr_range_test(trainlab.resolve_recipe(None, ["model.norm=group"]), seeds=(0, 1))
    assert sweep.shape == "ok" and sweep.steps == 300
    assert sweep.extra["lengthened_from"] == 100
    # the rule ran once, on the result that stands: its suggestion
    assert sweep.rule_trials and sweep.rule_trials[0]["lr"] == sweep.suggestion
    assert 1e-3 <= sweep.suggestion <= 3e-2
    finding = check_lr(sweep)
    assert finding.status == "ok" and "slow start" in finding.summary
    assert finding.values["lengthened_from"] == 100


def test_a_failed_sweep_gets_no_rule_tries(shuffled_digits: Path):
    recipe = digits(f"data={{name: npz, path: '{shuffled_digits}'}}", "augment=[]")
    sweep = lr_range_test(recipe, steps=30, seeds=(0,), lengthen=1)
    assert sweep.shape == "no_descent" and sweep.rule_trials == ()


def test_a_longer_sweep_that_diverges_keeps_the_no_descent(monkeypatch):
    """Over the same lrs the shorter sweep did not diverge: its reading stands, with a note."""
    from trainlab.diagnosis.lr_finder import range_test

    real = range_test._range_test

    def longer_diverges(recipe, min_lr, max_lr, steps, seeds, **kw):
        sweep = real(recipe, min_lr, max_lr, steps, seeds, **kw)
        return dataclasses.replace(sweep, shape="diverges_at_once") if steps > 30 else sweep

    monkeypatch.setattr(range_test, "_range_test", longer_diverges)
    sweep = lr_range_test(digits(), min_lr=1e-9, max_lr=1e-7, steps=30, seeds=(0,), rule_iters=0)
    assert sweep.shape == "no_descent" and sweep.steps == 30
    assert sweep.extra == {"longer_shape": "diverges_at_once"}


def test_a_range_too_low_shows_no_descent():
    sweep = lr_range_test(digits(), min_lr=1e-9, max_lr=1e-7, steps=30, seeds=(0,), rule_iters=0)
    assert sweep.shape == "no_descent"
    assert check_lr(sweep).status == "fail"


def test_global_rng_untouched_and_deterministic(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    det = torch.are_deterministic_algorithms_enabled()
    kwargs = dict(min_lr=1e-5, max_lr=1.0, steps=40, seeds=(3, 4), rule_iters=20, rule_tries=2)
    a = lr_range_test(digits("training.deterministic=true"), **kwargs)  # sets the switch
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
    assert torch.are_deterministic_algorithms_enabled() == det
    assert list(tmp_path.iterdir()) == []  # no files, no run folder
    b = lr_range_test(digits("training.deterministic=true"), **kwargs)
    assert a.suggestion == b.suggestion and a.rule_lr == b.rule_lr
    assert [s.losses for s in a.seeds] == [s.losses for s in b.seeds]
