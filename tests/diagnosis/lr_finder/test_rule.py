"""The 100-iteration rule (trainlab.diagnosis.lr_finder.rule): a decade at a time, up when too
slow, down when it diverges or rises."""

from __future__ import annotations

import pytest
import torch

from tests.diagnosis.lr_finder.lr_finder_util import digits


@pytest.mark.parametrize("start, direction", [(1e-7, "up"), (100.0, "down")])
def test_the_rule_moves_a_decade_at_a_time(start: float, direction: str):
    """A too-slow lr is followed by one 10x higher, a diverging one by one 10x lower."""
    from trainlab.diagnosis.lr_finder.rule import _rule_of_100
    from trainlab.diagnosis.lr_finder.sweep import _parts

    parts = _parts(digits(), 0)
    state = {k: v.clone() for k, v in parts.model.state_dict().items()}
    with torch.no_grad():
        x, y = next(iter(parts.loader.epoch(0)))
        start_loss = float(parts.loss_fn(parts.model(x), y))
    lr, trials = _rule_of_100(parts, state, start_loss, start, 1e3, 100, 6, 4.0)
    lrs = [t["lr"] for t in trials]
    factor = 10.0 if direction == "up" else 0.1
    assert lrs == pytest.approx([start * factor**i for i in range(len(lrs))])
    assert all(not t["passed"] for t in trials[:-1])
    if direction == "up":
        assert all(t["steps"] == 100 and not t["diverged"] for t in trials[:-1])
    else:
        assert trials[0]["diverged"] and trials[0]["steps"] <= 3
    assert lr is not None and trials[-1]["passed"] and lr == lrs[-1]


def test_the_rule_goes_down_after_a_rising_try(monkeypatch):
    """A try that neither passes nor diverges but ends above its start is too high, not too
    slow: the next try is 10x lower."""
    from trainlab.diagnosis.lr_finder import rule

    def fake_try(trainer, state, lr, start_loss, iters, diverge):
        passed = lr < 1e-2
        final = 0.5 * start_loss if passed else 1.5 * start_loss
        return {"lr": lr, "steps": 10 if passed else iters, "final_loss": final,
                "diverged": False, "passed": passed}  # fmt: skip

    monkeypatch.setattr(rule, "_rule_try", fake_try)
    lr, trials = rule._rule_of_100(None, {}, 2.0, 0.05, 10.0, 100, 3, 4.0)
    assert [t["lr"] for t in trials] == pytest.approx([0.05, 0.005])
    assert lr == pytest.approx(0.005)
