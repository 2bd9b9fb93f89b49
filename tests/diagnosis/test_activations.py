"""The layers check's activation statistics per layer (lecture 000)."""

from __future__ import annotations

import torch
from torch import nn

from trainlab.diagnosis.activations import Setting, activation_stats, check_activations

from .conftest import mlp

X = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))


def test_sigmoid_net_with_std_one_init_is_flagged_saturated():
    stats = activation_stats(mlp(nn.Sigmoid, lambda d: 1.0), X)
    assert len(stats) == 8 and all(s.kind == "Sigmoid" for s in stats)
    assert all(s.saturated is not None and s.saturated > 0.5 for s in stats)
    finding = check_activations(stats)
    assert finding.status == "fail" and finding.cause == "units.saturated"
    assert "saturated" in finding.advice and finding.fix == ("model.init=xavier_normal",)
    assert finding.values["init"]["max_saturated"] > 0.5


def test_deep_tanh_with_small_normal_init_collapses_and_advice_names_xavier():
    stats = activation_stats(mlp(nn.Tanh, lambda d: 0.01), X)
    assert stats[-1].std < 1e-3 * stats[0].std
    finding = check_activations(stats)
    assert finding.status == "fail"
    assert "collapse" in finding.advice and "xavier" in finding.advice.lower()
    assert "sqrt(2 / (fan_in + fan_out))" in finding.advice  # Glorot's std, not LeCun's
    assert finding.cause == "init.scale" and finding.fix == ("model.init=xavier_normal",)
    assert finding.values["init"]["per_layer_ratio"] < 0.8


def test_relu_net_with_kaiming_passes():
    stats = activation_stats(mlp(nn.ReLU, lambda d: (2 / d) ** 0.5), X)
    assert all(s.dead < 0.2 and s.saturated is None for s in stats)  # a few: correlated inputs
    finding = check_activations(stats, stats)
    assert finding.status == "ok", finding.line()
    assert 0.8 < finding.values["init"]["per_layer_ratio"] < 1.25


def test_xavier_relu_collapse_advice_names_kaiming_and_fan_in():
    stats = activation_stats(mlp(nn.ReLU, lambda d: d**-0.5), X)
    finding = check_activations(stats)
    assert finding.status != "ok"
    assert "kaiming" in finding.advice.lower() and "k*k*C_in" in finding.advice
    assert "sqrt(2 / fan_in)" in finding.advice and finding.fix == ("model.init=kaiming_normal",)
    # a recipe whose init already fits is not told to use it: the architecture is blamed
    fits = check_activations(stats, setting=Setting(init="kaiming_normal", norm="none"))
    assert fits.cause == "init.scale" and fits.fix == ("model.norm=batch",)
    assert "model.init" not in fits.advice


def test_exploding_activations_are_flagged():
    stats = activation_stats(mlp(nn.ReLU, lambda d: 3 * d**-0.5), X)
    finding = check_activations(stats)
    assert finding.status == "fail" and "explode" in finding.advice


def test_dead_units_counted_per_channel_and_flagged_after_training():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 10))
    with torch.no_grad():
        model[0].bias[:6] = -100.0  # six of eight feature maps never fire
    x = torch.randn(16, 1, 8, 8)
    stats = activation_stats(model, x)
    assert [s.kind for s in stats] == ["ReLU"] and stats[0].dead == 6 / 8
    healthy = [*stats]
    healthy[0] = type(stats[0])(**{**stats[0].to_json(), "dead": 0.0})
    at_init = check_activations(stats)  # dead from the start: the biases did it
    assert at_init.status == "fail" and at_init.cause == "units.dead"
    assert "6 ReLU" not in at_init.advice and "1 ReLU" in at_init.advice
    finding = check_activations(healthy, stats, Setting(lr=0.1))  # died while training
    assert finding.status == "warn" and "after training" in finding.advice
    assert finding.cause == "lr.high" and finding.fix == ("optimizer.lr=0.01",)


def test_model_without_activation_modules_falls_back_to_layer_outputs():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(64, 32), nn.Linear(32, 10)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    stats = activation_stats(Functional(), X)
    assert [s.name for s in stats] == ["a Linear(64->32)", "b Linear(32->10)"]
    assert stats[0].kind == "Linear"


def test_default_recipe_passes_and_is_left_untouched(default_recipe_batches):
    parts, batches = default_recipe_batches
    state = {k: v.clone() for k, v in parts.model.state_dict().items()}
    finding = check_activations(activation_stats(parts.model, batches[0][0]))
    assert finding.status == "ok", finding.line()
    assert all(torch.equal(v, parts.model.state_dict()[k]) for k, v in state.items())
