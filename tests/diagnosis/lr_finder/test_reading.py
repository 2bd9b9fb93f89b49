"""Reading the sweep's curve (trainlab.diagnosis.lr_finder.reading): the shape across seeds."""

from __future__ import annotations

from trainlab.diagnosis.lr_finder import check_lr


def test_seed_suggestions_far_apart_are_too_noisy(healthy):
    import dataclasses

    seeds = list(healthy.seeds)
    seeds[0] = dataclasses.replace(seeds[0], suggestion=seeds[1].suggestion * 100)
    from trainlab.diagnosis.lr_finder import reading

    shape, spread, _ = reading._shape(seeds, early=10)
    assert shape == "too_noisy" and spread >= 1.9
    noisy = dataclasses.replace(healthy, shape=shape, spread_decades=spread)
    finding = check_lr(noisy)
    assert finding.status == "warn" and "too noisy" in finding.summary
