"""The layers check's weights: gradient flow and the update/weight ratio."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.diagnosis.activations import Setting
from trainlab.diagnosis.gradients import check_flow, check_updates, gradient_stats

from .conftest import mlp

X = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))


def _stats(model, optimizer=None):
    return gradient_stats(model, F.cross_entropy(model(X), Y), optimizer)


def test_healthy_relu_kaiming_passes_with_sgd():
    model = mlp(nn.ReLU, lambda d: (2 / d) ** 0.5)
    stats = _stats(model, torch.optim.SGD(model.parameters(), lr=0.01))
    names = [f"{i} Linear(256->256)" for i in range(2, 15, 2)]
    assert [s.name for s in stats] == ["0 Linear(64->256)", *names, "16 Linear(256->10)"]
    assert check_flow(stats).status == "ok", check_flow(stats).line()
    finding = check_updates(stats)
    assert finding.status == "ok", finding.line()
    assert 1e-5 < finding.values["init"]["median_update_ratio"] < 1e-1


def test_update_ratio_is_the_actual_step_and_the_step_is_undone():
    model = mlp(nn.ReLU, lambda d: (2 / d) ** 0.5, depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = _stats(model, opt)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    for s in stats:  # plain SGD: the actual ratio is lr * |grad| / |w|
        assert abs(s.update_ratio - 0.1 * s.relative_grad) < 1e-4 * s.update_ratio + 1e-9
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = _stats(model, adam)
    assert not adam.state  # the optimiser's state is restored too (Adam's moments)
    weights = dict(model.named_parameters())
    for s in first:  # Adam's first step moves each weight by ~lr, whatever its gradient
        numel = weights[s.name.split()[0] + ".weight"].numel()
        assert abs(s.update_ratio - 1e-3 * numel**0.5 / s.weight_norm) < 0.05 * s.update_ratio


def test_deep_sigmoid_with_std_one_init_has_vanishing_gradients():
    finding = check_flow(_stats(mlp(nn.Sigmoid, lambda d: 1.0)), kinds=["Sigmoid"])
    assert finding.status in ("warn", "fail") and finding.cause == "gradients"
    assert finding.values["init"]["flow_ratio"] < 1e-3 and "vanish" in finding.advice
    assert finding.fix == ("model.activation=relu", "model.init=kaiming_normal")


def test_xavier_sigmoid_vanishes_badly_enough_to_fail():
    finding = check_flow(_stats(mlp(nn.Sigmoid, lambda d: d**-0.5)))
    assert finding.status == "fail" and finding.values["init"]["flow_ratio"] < 1e-5


def test_learning_rate_ten_gives_a_huge_update_ratio():
    model = mlp(nn.ReLU, lambda d: (2 / d) ** 0.5)
    stats = _stats(model, torch.optim.SGD(model.parameters(), lr=10.0))
    finding = check_updates(stats, setting=Setting(lr=10.0))
    assert finding.status == "fail" and finding.cause == "lr.high"
    assert finding.values["init"]["max_update_ratio"] > 1.0 and "learning rate" in finding.advice
    assert finding.fix == ("optimizer.lr=0.1",)  # scaled to the ratio: no layer above 0.1


def test_tiny_learning_rate_warns():
    model = mlp(nn.ReLU, lambda d: (2 / d) ** 0.5)
    stats = _stats(model, torch.optim.SGD(model.parameters(), lr=1e-6))
    finding = check_updates(stats, setting=Setting(lr=1e-6))
    assert finding.status == "warn" and "raise the learning rate" in finding.advice
    assert finding.cause == "lr.low" and finding.fix[0].startswith("optimizer.lr=")
    assert float(finding.fix[0].split("=")[1]) > 1e-4


def test_default_recipe_passes_at_its_base_learning_rate(default_recipe_batches):
    parts, batches = default_recipe_batches
    x, y = batches[0]
    opt = torch.optim.AdamW(parts.model.parameters(), lr=parts.base_lr, weight_decay=0.01)
    stats = gradient_stats(parts.model, parts.eval_loss_fn(parts.model(x), y), opt)
    for finding in (check_flow(stats), check_updates(stats)):
        assert finding.status == "ok", finding.line()


def test_a_zero_weight_layer_does_not_break_the_verdict():
    from trainlab.diagnosis.gradients import GradStats

    stats = [
        GradStats("0 Linear(8->8)", 0.0, 1.0, 0.0),  # no gradient reaches it
        GradStats("1 Linear(8->8)", 0.5, 0.0, None),  # zero-initialised: no |grad|/|w|
        GradStats("2 Linear(8->2)", 1.0, 1.0, 1e-3),
    ]
    finding = check_flow(stats)
    assert finding.status == "fail" and "learns nothing" in finding.advice
    # the zero weight's update is no evidence about the learning rate
    assert "learning rate" not in check_updates(stats).advice
