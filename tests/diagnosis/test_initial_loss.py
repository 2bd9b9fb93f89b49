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
    assert finding.cause == "init.last_layer" and finding.fix == ()  # no recipe key for it


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


def _blobs(n: int = 256, d: int = 20, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(n, d), torch.randint(0, classes, (n,))


def _head(*end: torch.nn.Module, d: int = 20, classes: int = 10) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(d, 32), torch.nn.ReLU(), torch.nn.Linear(32, classes), *end
    )


def test_softmax_before_cross_entropy_fails_as_model_output():
    x, y = _blobs()
    finding = check_initial_loss(_head(torch.nn.Softmax(dim=1)), [(x, y)], "cross_entropy", 10)
    assert finding.status == "fail" and finding.cause == "model.output", finding.line()
    assert "probabilities" in finding.summary and "Softmax" in finding.advice
    assert finding.values["ratio"] < 1.1  # the loss alone (near ln C) would have passed it
    healthy = check_initial_loss(_head(), [(x, y)], "cross_entropy", 10)
    assert healthy.status == "ok" and not healthy.values["probabilities"]
    # log-softmax before cross-entropy is the same loss: not flagged
    logs = check_initial_loss(_head(torch.nn.LogSoftmax(dim=1)), [(x, y)], "cross_entropy", 10)
    assert logs.status == "ok", logs.line()


class _FunctionalSoftmax(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.body(x), dim=1)


def test_softmax_applied_in_forward_is_seen_from_the_scores():
    x, y = _blobs()
    finding = check_initial_loss(_FunctionalSoftmax(), [(x, y)], "cross_entropy", 10)
    assert finding.status == "fail" and finding.cause == "model.output"
    assert "sums to 1" in finding.summary


def test_sigmoid_before_bce_fails_and_its_twin_passes():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    sig = _head(torch.nn.Sigmoid(), d=4, classes=1)
    finding = check_initial_loss(sig, [(x, y)], "bce", 2)
    assert finding.status == "fail" and finding.cause == "model.output", finding.line()
    assert finding.values["output_module"] == "Sigmoid" and "sigmoid" in finding.advice
    assert check_initial_loss(_head(d=4, classes=1), [(x, y)], "bce", 2).status == "ok"


def test_softmax_model_built_into_a_recipe_fails_through_the_training_batches():
    import trainlab
    from trainlab.diagnosis.checks import training_batches
    from trainlab.engine.build import build

    recipe = trainlab.resolve_recipe(None, ["model.norm=none"])
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    healthy = build(recipe, model=net)
    batches = training_batches(healthy, 2)
    assert check_initial_loss(healthy.model, batches, "cross_entropy", 10).status == "ok"
    faulty = build(recipe, model=torch.nn.Sequential(*net, torch.nn.Softmax(dim=1)))
    finding = check_initial_loss(faulty.model, batches, "cross_entropy", 10)
    assert finding.status == "fail" and finding.cause == "model.output"


def test_soft_mixup_targets_keep_the_ln_c_expectation():
    x, _ = _blobs()
    torch.manual_seed(1)
    t = torch.softmax(3 * torch.randn(256, 10), dim=1)  # soft targets, as mixup makes them
    model = _head()
    with torch.no_grad():
        model[-1].weight.mul_(1e-3)
        model[-1].bias.zero_()
    ce = check_initial_loss(model, [(x, t)], "cross_entropy", 10)
    assert ce.status == "ok" and ce.values["soft_targets"]
    assert ce.values["measured"] == pytest.approx(math.log(10), rel=1e-3)
    kl = check_initial_loss(model, [(x, t)], "kl", 10)
    entropy = float(-(t * t.log()).sum(1).mean())
    assert kl.values["expected"] == pytest.approx(math.log(10) - entropy, rel=1e-4)
    assert kl.status == "ok" and kl.values["ratio"] == pytest.approx(1.0, abs=0.01)


def test_bias_offset_blames_the_last_layer_with_a_fix_only_where_the_recipe_lacks_it():
    x, y = _blobs()
    model = _head()
    torch.manual_seed(0)
    with torch.no_grad():
        model[-1].bias.copy_(10.0 * torch.randn(10))
    kept = check_initial_loss(model, [(x, y)], "cross_entropy", 10, init_name="keep")
    assert kept.status == "fail" and kept.cause == "init.last_layer"
    assert kept.fix == ("model.init=kaiming_normal",)
    # kaiming_normal already zeroes biases: never advise what the recipe has
    own = check_initial_loss(model, [(x, y)], "cross_entropy", 10, init_name="kaiming_normal")
    assert own.cause == "init.last_layer" and own.fix == ()
    assert "model.init=kaiming_normal" not in own.advice
