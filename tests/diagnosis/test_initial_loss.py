"""Check 1: the loss at init against ln C (lecture 002, step 1)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainlab.diagnosis.initial_loss import check_initial_loss, expected_initial_loss
from trainlab.nn.losses import LOSSES


def _restore(model, state):
    model.load_state_dict(state)


def test_healthy_default_recipe_passes(default_recipe_batches):
    parts, batches = default_recipe_batches
    finding = check_initial_loss(parts.model, batches, "cross_entropy", parts.num_classes)
    assert finding.status == "ok", finding.line()
    assert finding.values["expected"] == pytest.approx(math.log(10))
    assert finding.values["ratio"] < 2.0
    assert finding.values["examples"] == sum(len(y) for _, y in batches)


def test_ten_x_last_layer_bias_fails_and_names_the_bias(default_recipe_batches):
    parts, batches = default_recipe_batches
    model = parts.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            model[-1].bias.copy_(10.0 * torch.randn(10))
        finding = check_initial_loss(model, batches, "cross_entropy", 10)
    finally:
        _restore(model, state)
    assert finding.status == "fail", finding.line()
    assert finding.values["ratio"] > 3.0
    assert "bias" in finding.advice
    assert finding.values["measured"] > 3 * math.log(10)


def test_ten_x_last_layer_weights_fail_as_too_large_scores(default_recipe_batches):
    parts, batches = default_recipe_batches
    model = parts.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with torch.no_grad():
            model[-1].weight.mul_(10.0)
        finding = check_initial_loss(model, batches, "cross_entropy", 10)
    finally:
        _restore(model, state)
    assert finding.status == "fail"
    assert "too large" in finding.advice


def test_tiny_init_gives_ln_c_and_leaves_the_model_untouched(default_recipe_batches):
    parts, batches = default_recipe_batches
    model = parts.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with torch.no_grad():
            model[-1].weight.mul_(1e-3)
        tiny = {k: v.clone() for k, v in model.state_dict().items()}
        finding = check_initial_loss(model, batches, "cross_entropy", 10)
        after = model.state_dict()
        assert all(torch.equal(tiny[k], after[k]) for k in tiny)  # BN running stats restored
        assert model.training
    finally:
        _restore(model, state)
    assert finding.status == "ok"
    assert finding.values["measured"] == pytest.approx(math.log(10), rel=1e-3)


@pytest.mark.parametrize(("loss", "classes"), [("cross_entropy", 10), ("kl", 7), ("bce", 2)])
def test_expected_value_is_the_loss_of_all_zero_scores(loss, classes):
    torch.manual_seed(0)
    y = torch.randint(0, classes, (64,))
    outputs = 1 if loss == "bce" and classes == 2 else classes
    zero = LOSSES.build(loss)(torch.zeros(64, outputs), y)
    assert float(zero) == pytest.approx(expected_initial_loss(loss, classes), rel=1e-6)


def test_bce_one_logit_small_init_passes_and_large_fails():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    assert check_initial_loss(model, [(x, y)], "bce", 2).status == "ok"
    with torch.no_grad():
        model[-1].bias.fill_(8.0)  # everything predicted positive, confidently
    finding = check_initial_loss(model, [(x, y)], "bce", 2)
    assert finding.status == "fail" and finding.values["expected"] == pytest.approx(math.log(2))


def test_below_chance_warns_and_other_losses_are_not_judged():
    torch.manual_seed(0)
    x = torch.randn(128, 10)
    y = x.argmax(1)
    leak = torch.nn.Linear(10, 10)
    with torch.no_grad():
        leak.weight.copy_(5 * torch.eye(10))
        leak.bias.zero_()
    assert F.cross_entropy(leak(x), y) < 1.0
    assert check_initial_loss(leak, [(x, y)], "cross_entropy", 10).status == "warn"
    hinge = check_initial_loss(leak, [(x, y)], "hinge", 10)
    assert hinge.status == "ok" and "not judged" in hinge.summary
    assert hinge.values["zero_score_loss"] == pytest.approx(9.0)
