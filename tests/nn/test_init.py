"""Every registered weight init against its formula (lecture 000), and the activation-statistics
experiment of the lecture reproduced at a smaller width.

Fan-in of a conv layer is C_in * k * k (the lecture's "Din is kernel_size^2 x input_channels"), so
the expected std is computed here from the layer's sizes, never from ``torch.nn.init``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import trainlab.catalog  # noqa: F401  (fills every registry)
from trainlab.errors import RecipeError
from trainlab.nn.activations import ACTIVATIONS, kaiming_nonlinearity
from trainlab.nn.init import BATCH_NORMS, INITS, WEIGHTED, init_model
from trainlab.nn.models import create_model
from trainlab.recipe import ModelConfig

RELU = ("relu", 0.0)

# (layer factory, fan_in, fan_out): a big Linear and a Conv2d with fan = channels * k * k
LAYERS = {
    "linear": (lambda: nn.Linear(2000, 1000), 2000, 1000),
    "conv": (lambda: nn.Conv2d(64, 128, 3), 64 * 3 * 3, 128 * 3 * 3),
}


def _normal(std_of):
    return ("normal", std_of)


def _uniform(bound_of):
    return ("uniform", bound_of)


def _leaky_gain(a: float) -> float:
    return math.sqrt(2.0 / (1.0 + a * a))


# name -> list of (recipe params, activation context, (kind, expected(fan_in, fan_out)))
CASES: dict[str, list[tuple[dict, tuple[str, float], tuple]]] = {
    "keep": [({}, RELU, ("default", None))],  # the constructor's weights, untouched
    "default": [({}, RELU, ("default", None))],
    "zeros": [({}, RELU, ("zeros", None))],
    "normal": [
        ({}, RELU, _normal(lambda fi, fo: 0.01)),
        ({"std": 0.05}, RELU, _normal(lambda fi, fo: 0.05)),
    ],
    "xavier_normal": [
        ({}, RELU, _normal(lambda fi, fo: math.sqrt(2.0 / (fi + fo)))),
        ({"gain": 2.0}, RELU, _normal(lambda fi, fo: 2.0 * math.sqrt(2.0 / (fi + fo)))),
    ],
    "xavier_uniform": [
        ({}, RELU, _uniform(lambda fi, fo: math.sqrt(6.0 / (fi + fo)))),
        ({"gain": 0.5}, RELU, _uniform(lambda fi, fo: 0.5 * math.sqrt(6.0 / (fi + fo)))),
    ],
    "lecun_normal": [
        ({}, RELU, _normal(lambda fi, fo: 1.0 / math.sqrt(fi))),
        # independent of the activation: always 1/sqrt(fan_in)
        ({}, ("tanh", 0.0), _normal(lambda fi, fo: 1.0 / math.sqrt(fi))),
    ],
    "kaiming_normal": [
        ({}, RELU, _normal(lambda fi, fo: math.sqrt(2.0 / fi))),
        ({"mode": "fan_out"}, RELU, _normal(lambda fi, fo: math.sqrt(2.0 / fo))),
        ({}, ("leaky_relu", 0.2), _normal(lambda fi, fo: _leaky_gain(0.2) / math.sqrt(fi))),
        ({}, ("tanh", 0.0), _normal(lambda fi, fo: 5.0 / 3.0 / math.sqrt(fi))),
        # an explicit nonlinearity overrides the model's activation
        ({"nonlinearity": "linear"}, RELU, _normal(lambda fi, fo: 1.0 / math.sqrt(fi))),
        ({"nonlinearity": "relu"}, ("tanh", 0.0), _normal(lambda fi, fo: math.sqrt(2.0 / fi))),
    ],
    "kaiming_uniform": [
        ({}, RELU, _uniform(lambda fi, fo: math.sqrt(6.0 / fi))),
        ({"mode": "fan_out"}, RELU, _uniform(lambda fi, fo: math.sqrt(6.0 / fo))),
        ({}, ("leaky_relu", 0.2), _uniform(lambda fi, fo: _leaky_gain(0.2) * math.sqrt(3.0 / fi))),
        ({}, ("tanh", 0.0), _uniform(lambda fi, fo: 5.0 / 3.0 * math.sqrt(3.0 / fi))),
    ],
    "orthogonal": [
        ({}, RELU, ("orthogonal", 1.0)),
        ({"gain": 2.0}, RELU, ("orthogonal", 2.0)),
    ],
    # LSUV's per-weight step is orthonormal; its data-dependent step is tested below
    "lsuv": [({"tol": 0.05, "max_iter": 3}, RELU, ("orthogonal", 1.0))],
}


def _check_orthogonal(w: torch.Tensor, gain: float) -> None:
    m = w.detach().reshape(w.shape[0], -1).double()
    small = min(m.shape)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m  # (small, small)
    torch.testing.assert_close(
        gram, gain**2 * torch.eye(small, dtype=torch.float64), atol=1e-4, rtol=0.0
    )


def _check(kind: str, expected, w: torch.Tensor, fan_in: int, fan_out: int, tag: str) -> None:
    w = w.detach().double()
    if kind == "zeros":
        assert torch.count_nonzero(w) == 0, tag
    elif kind == "normal":
        std = expected(fan_in, fan_out)
        assert w.mean().abs().item() < 0.02 * std, tag
        assert w.std().item() == pytest.approx(std, rel=0.02), tag
        # gaussian, not uniform: the tails go well past sqrt(3) std
        assert w.abs().max().item() > 3.0 * std, tag
    elif kind == "uniform":
        bound = expected(fan_in, fan_out)
        assert w.abs().max().item() <= bound * (1 + 1e-6), tag
        assert w.abs().max().item() >= 0.99 * bound, tag
        assert w.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.02), tag
    elif kind == "orthogonal":
        _check_orthogonal(w, expected)
    else:  # pragma: no cover - a typo in CASES
        raise AssertionError(kind)


@pytest.mark.parametrize("name", INITS.names())
@pytest.mark.parametrize("layer", list(LAYERS))
def test_init_matches_formula(name: str, layer: str) -> None:
    if name not in CASES:
        pytest.fail(f"init {name!r} is registered but has no expected formula in this test")
    make, fan_in, fan_out = LAYERS[layer]
    torch.manual_seed(0)
    for params, activation, (kind, expected) in CASES[name]:
        tag = f"{name} {params} {activation} on {layer}"
        module = make()
        before = module.weight.detach().clone()
        bias_before = module.bias.detach().clone()
        weight_init = INITS.build(name, context={"activation": activation}, **params)
        init_model(module, weight_init)
        if kind == "default":
            assert weight_init is None, tag
            torch.testing.assert_close(module.weight.detach(), before)
            torch.testing.assert_close(module.bias.detach(), bias_before)
            # torch's own default: kaiming_uniform(a=sqrt 5), bound 1/sqrt(fan_in)
            bound = 1.0 / math.sqrt(fan_in)
            assert module.weight.abs().max().item() <= bound * (1 + 1e-6), tag
            assert module.weight.abs().max().item() >= 0.99 * bound, tag
            continue
        assert callable(weight_init), tag
        assert torch.count_nonzero(module.bias) == 0, tag
        _check(kind, expected, module.weight, fan_in, fan_out, tag)


def test_orthogonal_tall_matrix() -> None:
    torch.manual_seed(0)
    module = nn.Linear(20, 60)  # weight (60, 20): columns orthonormal
    init_model(module, INITS.build("orthogonal", context={"activation": RELU}))
    w = module.weight.detach().double()
    torch.testing.assert_close(w.T @ w, torch.eye(20, dtype=torch.float64), atol=1e-5, rtol=0)


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2 = nn.Conv2d(3, 8, 3)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv1d(8, 8, 3)
        self.bn1 = nn.BatchNorm1d(8)
        self.gn = nn.GroupNorm(2, 8)
        self.fc = nn.Linear(8, 6)
        self.ln = nn.LayerNorm(6)


@pytest.mark.parametrize("name", INITS.names())
def test_init_model_zeroes_biases_and_resets_norms(name: str) -> None:
    torch.manual_seed(0)
    model = _Mixed()
    with torch.no_grad():  # make every parameter visibly non-initial
        for p in model.parameters():
            p.uniform_(0.5, 1.5)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    weight_init = INITS.build(name, context={"activation": RELU})
    init_model(model, weight_init)
    if weight_init is None:  # 'default' keeps everything as it was
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, snapshot[k])
        return
    for mod in (model.conv2, model.conv1, model.fc):
        assert torch.count_nonzero(mod.bias) == 0, f"{name}: bias of {mod}"
        assert not torch.equal(mod.weight, snapshot[_key(model, mod, "weight")]), name
    for mod in (model.bn2, model.bn1, model.gn, model.ln):
        torch.testing.assert_close(mod.weight.detach(), torch.ones_like(mod.weight))
        torch.testing.assert_close(mod.bias.detach(), torch.zeros_like(mod.bias))


def _key(model: nn.Module, module: nn.Module, attr: str) -> str:
    name = next(n for n, m in model.named_modules() if m is module)
    return f"{name}.{attr}"


# ---------------------------------------------------------------------------------------------
# lecture 000's activation statistics: 6 layers, tanh / ReLU, different inits (width 1024)

WIDTH, BATCH, DEPTH = 1024, 256, 6


def _layer_stds(init: str, activation: str, **params) -> list[float]:
    torch.manual_seed(0)
    layers = [nn.Linear(WIDTH, WIDTH, bias=False) for _ in range(DEPTH)]
    act = ACTIVATIONS.build(activation)
    weight_init = INITS.build(
        init, context={"activation": kaiming_nonlinearity(activation, {})}, **params
    )
    init_model(nn.Sequential(*layers), weight_init)
    x = torch.randn(BATCH, WIDTH)
    stds = []
    with torch.no_grad():
        for layer in layers:
            x = act(layer(x))
            stds.append(x.std().item())
    return stds


def test_small_gaussian_with_tanh_collapses() -> None:
    stds = _layer_stds("normal", "tanh", std=0.01)
    assert stds[-1] < 0.2 * stds[0]
    assert stds[-1] < 1e-2  # "all activations tend to zero"
    assert all(b < a for a, b in zip(stds, stds[1:], strict=False))


@pytest.mark.parametrize("init", ["lecun_normal", "xavier_normal"])
def test_xavier_with_tanh_keeps_the_scale(init: str) -> None:
    # fan_in == fan_out here, so Glorot's std equals the lecture's 1/sqrt(Din)
    stds = _layer_stds(init, "tanh")
    collapsed = _layer_stds("normal", "tanh", std=0.01)
    assert stds[-1] > 0.4 * stds[0]  # tanh at gain 1 shrinks slowly: ~0.47 after 6 layers
    assert stds[-1] > 100 * collapsed[-1]
    assert max(stds) < 1.0


def test_xavier_with_relu_collapses() -> None:
    stds = _layer_stds("lecun_normal", "relu")
    # each ReLU halves the second moment: std ratio 2^(-5/2) ~ 0.18 from layer 1 to layer 6
    assert stds[-1] < 0.25 * stds[0]
    assert stds[-1] / stds[0] == pytest.approx(2 ** (-2.5), rel=0.15)


@pytest.mark.parametrize("init", ["kaiming_normal", "kaiming_uniform"])
def test_kaiming_with_relu_keeps_the_scale(init: str) -> None:
    stds = _layer_stds(init, "relu")
    assert 0.8 < stds[-1] / stds[0] < 1.25
    assert all(0.7 < s < 1.0 for s in stds)  # sqrt(E[relu(z)^2] - E[relu(z)]^2), z ~ N(0, 2)


def test_explicit_leaky_relu_nonlinearity_uses_the_activation_slope() -> None:
    layer = nn.Linear(4000, 2000)
    fn = INITS.build(
        "kaiming_normal", context={"activation": ("leaky_relu", 0.2)}, nonlinearity="leaky_relu"
    )
    init_model(layer, fn)
    expected = math.sqrt(2.0 / (1 + 0.2**2)) / math.sqrt(4000)
    assert abs(layer.weight.std().item() - expected) / expected < 0.02


# ---------------------------------------------------------------------------------------------
# LSUV (Mishkin and Matas 2016): orthonormal, then unit output variance layer by layer

LSUV_MODELS = {
    "tanh mlp": ({"name": "mlp", "widths": [64] * 6, "activation": "tanh"}, (20,)),
    "relu mlp": ({"name": "mlp", "widths": [64] * 6, "activation": "relu"}, (20,)),
    "bn convnet": ({"name": "convnet", "channels": [8, 16], "norm": "batch"}, (3, 12, 12)),
    "swiglu resnet": ({"name": "resnet", "channels": [8, 16], "activation": "swiglu"}, (2, 30)),
}


def _sample(in_shape: tuple[int, ...]) -> torch.Tensor:
    """Inputs far from unit scale, so a layer's variance is wrong unless LSUV fixes it."""
    gen = torch.Generator().manual_seed(1)
    return 4.0 * torch.randn(96, *in_shape, generator=gen) + 1.0


def _output_stds(model: nn.Module, sample: torch.Tensor) -> dict[str, float]:
    """Each Linear/Conv output's std on ``sample``, batch norm on batch statistics (as LSUV)."""
    model.eval()
    for m in model.modules():
        if isinstance(m, BATCH_NORMS):
            m.train()
    names = {m: n for n, m in model.named_modules() if isinstance(m, WEIGHTED)}
    stds: dict[str, float] = {}

    def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        stds.setdefault(names[module], out.std().item())

    handles = [m.register_forward_hook(record) for m in names]
    with torch.no_grad():
        model(sample)
    for h in handles:
        h.remove()
    return stds


@pytest.mark.parametrize("case", list(LSUV_MODELS))
def test_lsuv_gives_every_layer_unit_variance(case: str) -> None:
    raw, in_shape = LSUV_MODELS[case]
    sample = _sample(in_shape)
    torch.manual_seed(0)
    model = create_model(ModelConfig.model_validate({**raw, "init": "lsuv"}), in_shape, 5, sample)
    running = {n: b.clone() for n, b in model.named_buffers()}
    assert model.training  # LSUV's eval/train switches are undone
    stds = _output_stds(model, sample)
    assert len(stds) == sum(isinstance(m, WEIGHTED) for m in model.modules())
    for name, std in stds.items():
        assert abs(std - 1.0) < 0.1, f"{case}: {name} std {std:.3f}"
    for m in model.modules():
        if isinstance(m, WEIGHTED) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    # without the data-dependent step (orthonormal only) some layer is far from unit variance
    torch.manual_seed(0)
    plain = create_model(ModelConfig.model_validate({**raw, "init": "orthogonal"}), in_shape, 5)
    assert max(abs(s - 1.0) for s in _output_stds(plain, sample).values()) > 0.5, case
    # LSUV's forward passes left no trace in the batch-norm running statistics
    fresh = create_model(ModelConfig.model_validate(raw), in_shape, 5)
    for name, buf in fresh.named_buffers():
        torch.testing.assert_close(running[name], buf, rtol=0, atol=0)


def test_lsuv_tolerance_and_iterations_are_the_recipes() -> None:
    raw, in_shape = LSUV_MODELS["relu mlp"]
    sample = _sample(in_shape)
    init = INITS.build("lsuv", context={"activation": RELU}, tol=0.01, max_iter=10)
    torch.manual_seed(0)
    model = create_model(ModelConfig.model_validate(raw), in_shape, 5)
    variances = init.fit(model, sample)
    assert all(abs(v - 1.0) < 0.01 for v in variances.values()), variances
    no_steps = INITS.build("lsuv", context={"activation": RELU}, max_iter=1)
    variances = no_steps.fit(create_model(ModelConfig.model_validate(raw), in_shape, 5), sample)
    assert len(variances) == 7 and all(math.isfinite(v) for v in variances.values())


def test_lsuv_is_deterministic_under_a_seed() -> None:
    raw, in_shape = LSUV_MODELS["bn convnet"]
    cfg = ModelConfig.model_validate({**raw, "init": {"name": "lsuv", "tol": 0.05}})
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        states.append(create_model(cfg, in_shape, 4, sample=_sample(in_shape)).state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_lsuv_needs_a_sample() -> None:
    cfg = ModelConfig.model_validate({"init": "lsuv"})
    with pytest.raises(RecipeError, match=r"^model.init=lsuv is data-dependent[^\n]*$"):
        create_model(cfg, (8,), 2)
    with pytest.raises(ValueError, match="sample must be a batch"):
        create_model(cfg, (8,), 2, sample=torch.randn(4, 9))
