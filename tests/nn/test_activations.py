"""Every registered activation against the lecture 000 formula, written here with basic torch ops.

Values and input gradients are compared on a random float64 input with both signs. A newly
registered activation without a reference formula below makes ``test_matches_lecture_formula``
fail, so the registry and the tests cannot drift apart. The width-reducing units (SwiGLU, Maxout)
are checked on (N, e*w), (N, e*C, L) and (N, e*C, H, W) inputs, channel-wise (dim 1).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import trainlab.catalog  # noqa: F401  (fills every registry)
from trainlab.nn.activations import (
    ACTIVATIONS,
    SWIGLU_GAIN,
    kaiming_nonlinearity,
    width_expansion,
)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def _tanh(x: torch.Tensor) -> torch.Tensor:
    e2 = torch.exp(2.0 * x)
    return (e2 - 1.0) / (e2 + 1.0)


def _max(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(a > b, a, b)


def _elu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.where(x > 0, x, alpha * (torch.exp(x) - 1.0))


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return x / 2.0 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + _tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# name -> list of (recipe params, reference formula)
REFERENCES: dict[str, list[tuple[dict, object]]] = {
    "sigmoid": [({}, _sigmoid)],
    "tanh": [({}, _tanh)],
    "relu": [({}, lambda x: _max(torch.zeros_like(x), x))],
    "leaky_relu": [
        ({}, lambda x: _max(0.01 * x, x)),
        ({"alpha": 0.01}, lambda x: _max(0.01 * x, x)),
        ({"alpha": 0.1}, lambda x: _max(0.1 * x, x)),
    ],
    "prelu": [
        ({}, lambda x: _max(0.25 * x, x)),
        ({"init": 0.1}, lambda x: _max(0.1 * x, x)),
    ],
    "elu": [({}, lambda x: _elu(x, 1.0)), ({"alpha": 0.5}, lambda x: _elu(x, 0.5))],
    "selu": [({}, lambda x: SELU_LAMBDA * _elu(x, SELU_ALPHA))],
    "gelu": [({}, _gelu)],
    "gelu_tanh": [({}, _gelu_tanh)],
    "silu": [({}, lambda x: x * _sigmoid(x))],
    "swish": [({}, lambda x: x * _sigmoid(x))],
}


def _swiglu(x: torch.Tensor) -> torch.Tensor:
    """Shazeer's Swish(xW) * (xV): gate a = first half of the channels, value b = second half."""
    w = x.shape[1] // 2
    a, b = x[:, :w], x[:, w:]
    return a * _sigmoid(a) * b


def _maxout(k: int):
    """Unit i = max over channels i*k .. i*k + k - 1, i.e. over the strided slices x[:, j::k]."""

    def formula(x: torch.Tensor) -> torch.Tensor:
        out = x[:, 0::k]
        for j in range(1, k):
            out = _max(out, x[:, j::k])
        return out

    return formula


# name -> list of (recipe params, reference formula over dim 1, width expansion)
REDUCING: dict[str, list[tuple[dict, object, int]]] = {
    "swiglu": [({}, _swiglu, 2)],
    "maxout": [({}, _maxout(2), 2), ({"k": 2}, _maxout(2), 2), ({"k": 3}, _maxout(3), 3)],
}
REDUCING_SHAPES = [(64, 5), (8, 4, 7), (4, 3, 5, 6)]  # (N, w), (N, C, L), (N, C, H, W)


def _input() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, generator=gen, dtype=torch.float64) * 3.0
    extremes = torch.tensor([-12.0, -5.0, -0.3, 0.3, 5.0, 12.0], dtype=torch.float64)
    return torch.cat([x, extremes])


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_matches_lecture_formula(name: str) -> None:
    if name in REDUCING:
        _check_reducing(name)
        return
    if name not in REFERENCES:
        pytest.fail(f"activation {name!r} is registered but has no reference formula in this test")
    assert width_expansion(ACTIVATIONS.build(name)) == 1
    x0 = _input()
    assert (x0 < 0).any() and (x0 > 0).any()
    upstream = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=x0.dtype)
    for params, formula in REFERENCES[name]:
        module = ACTIVATIONS.build(name, **params).double()
        assert isinstance(module, nn.Module)
        x = x0.clone().requires_grad_(True)
        out = module(x)
        (grad,) = torch.autograd.grad(out, x, upstream)
        xr = x0.clone().requires_grad_(True)
        ref = formula(xr)
        (ref_grad,) = torch.autograd.grad(ref, xr, upstream)
        torch.testing.assert_close(out, ref, rtol=1e-7, atol=1e-9, msg=f"{name} {params} value")
        torch.testing.assert_close(
            grad, ref_grad, rtol=1e-7, atol=1e-9, msg=f"{name} {params} gradient"
        )


def _check_reducing(name: str) -> None:
    gen = torch.Generator().manual_seed(2)
    for params, formula, expansion in REDUCING[name]:
        module = ACTIVATIONS.build(name, **params).double()
        assert width_expansion(module) == expansion, (name, params)
        for n, w, *spatial in REDUCING_SHAPES:
            tag = f"{name} {params} on {(n, w, *spatial)}"
            x0 = 3.0 * torch.randn(n, expansion * w, *spatial, generator=gen, dtype=torch.float64)
            upstream = torch.randn(n, w, *spatial, generator=gen, dtype=torch.float64)
            x, xr = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
            out, ref = module(x), formula(xr)
            assert out.shape == (n, w, *spatial), tag
            (grad,) = torch.autograd.grad(out, x, upstream)
            (ref_grad,) = torch.autograd.grad(ref, xr, upstream)
            torch.testing.assert_close(out, ref, rtol=1e-7, atol=1e-9, msg=f"{tag} value")
            torch.testing.assert_close(grad, ref_grad, rtol=1e-7, atol=1e-9, msg=f"{tag} grad")
            small = x0[:2].clone().requires_grad_(True)
            assert torch.autograd.gradcheck(module, (small,)), tag


def test_swiglu_and_maxout_match_torch_reference_ops() -> None:
    x = torch.randn(6, 8, 5, dtype=torch.float64)
    a, b = x[:, :4], x[:, 4:]
    torch.testing.assert_close(ACTIVATIONS.build("swiglu")(x), torch.nn.functional.silu(a) * b)
    groups = x.reshape(6, 4, 2, 5)  # consecutive channel pairs
    torch.testing.assert_close(ACTIVATIONS.build("maxout")(x), groups.max(dim=2).values)
    with pytest.raises(ValueError, match="not a multiple of k=3"):
        ACTIVATIONS.build("maxout", k=3)(x)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_factory_returns_a_fresh_module(name: str) -> None:
    a, b = ACTIVATIONS.build(name), ACTIVATIONS.build(name)
    assert a is not b
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert pa is not pb


def test_prelu_slope_is_learned_by_backprop() -> None:
    module = ACTIVATIONS.build("prelu").double()
    (alpha,) = list(module.parameters())
    torch.testing.assert_close(alpha.detach(), torch.tensor([0.25], dtype=torch.float64))
    x = _input()
    upstream = torch.ones_like(x)
    (g,) = torch.autograd.grad(module(x), alpha, upstream)
    # d/d alpha of max(alpha x, x) is x where x < 0 (alpha < 1), 0 elsewhere
    torch.testing.assert_close(g, x.clamp(max=0.0).sum().reshape(1))


def test_lecture_selu_constants_are_torchs() -> None:
    x = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    out = ACTIVATIONS.build("selu")(x)
    expected = torch.tensor(
        [SELU_LAMBDA * SELU_ALPHA * (math.exp(-1.0) - 1.0), SELU_LAMBDA * 2.0], dtype=torch.float64
    )
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0.0)


def test_gelu_exact_and_tanh_differ() -> None:
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    exact, approx = ACTIVATIONS.build("gelu")(x), ACTIVATIONS.build("gelu_tanh")(x)
    diff = (exact - approx).abs().max().item()
    assert 1e-6 < diff < 1e-3  # a close approximation, but not the same function


# ---------------------------------------------------------------------------------------------
# kaiming_nonlinearity: which torch gain each activation gets

KAIMING: dict[str, list[tuple[dict, tuple[str, float]]]] = {
    "sigmoid": [({}, ("sigmoid", 0.0))],
    "tanh": [({}, ("tanh", 0.0))],
    "relu": [({}, ("relu", 0.0))],
    "leaky_relu": [({}, ("leaky_relu", 0.01)), ({"alpha": 0.1}, ("leaky_relu", 0.1))],
    "prelu": [({}, ("leaky_relu", 0.25)), ({"init": 0.1}, ("leaky_relu", 0.1))],
    "elu": [({}, ("relu", 0.0))],
    "selu": [({}, ("linear", 0.0))],
    "gelu": [({}, ("relu", 0.0))],
    "gelu_tanh": [({}, ("relu", 0.0))],
    "silu": [({}, ("relu", 0.0))],
    "swish": [({}, ("relu", 0.0))],
    # gated/maxout units: their variance-preserving gain, expressed as a leaky-ReLU slope
    # (gain sqrt(2 / (1 + a^2))); checked by experiment in test_reducing_units_keep_the_scale
    "swiglu": [({}, ("leaky_relu", math.sqrt(2.0 / SWIGLU_GAIN**2 - 1.0)))],
    "maxout": [({}, ("leaky_relu", 1.0)), ({"k": 2}, ("leaky_relu", 1.0))],
}


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_kaiming_nonlinearity_mapping(name: str) -> None:
    if name not in KAIMING:
        pytest.fail(f"activation {name!r} has no expected Kaiming nonlinearity in this test")
    for params, expected in KAIMING[name]:
        got = kaiming_nonlinearity(name, params)
        assert got[0] == expected[0] and got[1] == pytest.approx(expected[1]), (name, params)
        assert isinstance(got[1], float)
        # a registered activation must not fall through to the 'linear' default (SELU maps to
        # 'linear' on purpose: its self-normalisation assumes LeCun's std = 1/sqrt(fan_in))
        assert got[0] != "linear" or name == "selu"
        gain = nn.init.calculate_gain(*got)
        assert 0.5 < gain < 2.0


def test_kaiming_gains_follow_the_activation() -> None:
    def gain(name: str, params: dict | None = None) -> float:
        return nn.init.calculate_gain(*kaiming_nonlinearity(name, params or {}))

    assert gain("relu") == pytest.approx(math.sqrt(2.0))
    assert gain("tanh") == pytest.approx(5.0 / 3.0)
    assert gain("leaky_relu", {"alpha": 0.2}) == pytest.approx(math.sqrt(2.0 / (1 + 0.2**2)))
    assert gain("prelu") == pytest.approx(math.sqrt(2.0 / (1 + 0.25**2)))
    assert gain("sigmoid") == pytest.approx(1.0)


def test_kaiming_nonlinearity_unknown_is_linear() -> None:
    assert kaiming_nonlinearity("some_user_activation", {}) == ("linear", 0.0)
    assert nn.init.calculate_gain("linear") == 1.0


def test_swiglu_gain_solves_the_fixed_point() -> None:
    # g^2 E[silu(g z)^2] = 1 for z ~ N(0, 1), by quadrature on a fine grid
    z = torch.linspace(-12.0, 12.0, 240001, dtype=torch.float64)
    density = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    g = SWIGLU_GAIN
    second_moment = g * g * (torch.nn.functional.silu(g * z) ** 2 * density).sum() * (z[1] - z[0])
    assert second_moment.item() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    "name, params", [("swiglu", {}), ("maxout", {"k": 2}), ("maxout", {"k": 4})]
)
def test_reducing_units_keep_the_scale(name: str, params: dict) -> None:
    """Kaiming-normal with the mapped gain, then the unit: unit second moment in, unit out."""
    torch.manual_seed(0)
    unit = ACTIVATIONS.build(name, **params)
    layer = nn.Linear(512, 512 * width_expansion(unit), bias=False)
    nonlinearity, a = kaiming_nonlinearity(name, params)
    nn.init.kaiming_normal_(layer.weight, a=a, nonlinearity=nonlinearity)
    with torch.no_grad():
        out = unit(layer(torch.randn(2048, 512)))
    assert out.pow(2).mean().item() == pytest.approx(1.0, abs=0.05)
