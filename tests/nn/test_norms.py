"""Every registered normalisation against torch's functional reference, for features (dims 0),
sequences (dims 1) and images (dims 2): outputs and the gradients with respect to the input and to
the affine parameters, with non-trivial affine values so a wrong axis cannot hide.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import trainlab.catalog  # noqa: F401  (fills every registry)
from trainlab.errors import RecipeError
from trainlab.nn.norms import NORMS

CHANNELS = 16
SHAPES = {0: (12, CHANNELS), 1: (6, CHANNELS, 9), 2: (4, CHANNELS, 5, 7)}


def _expand(p: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A per-channel (C,) affine parameter broadcast over the non-batch dims (C, ...) of ``x``."""
    if p is None:
        return None
    return p.reshape(-1, *([1] * (x.ndim - 2))).expand(x.shape[1:])


def _batch(x, w, b, eps, params):
    return F.batch_norm(x, None, None, w, b, training=True, eps=eps)


def _layer(x, w, b, eps, params):
    # per sample over all features: (C,) for vectors, (C, L) / (C, H, W) for maps
    return F.layer_norm(x, x.shape[1:], _expand(w, x), _expand(b, x), eps)


def _instance(x, w, b, eps, params):
    return F.instance_norm(x, weight=w, bias=b, use_input_stats=True, eps=eps)


def _group(x, w, b, eps, params):
    return F.group_norm(x, params.get("groups", 8), w, b, eps)


def _identity(x, w, b, eps, params):
    return x


# name -> (reference, dims it supports, parameter sets to build with)
REFERENCES = {
    "none": (_identity, (0, 1, 2), [{}]),
    "batch": (_batch, (0, 1, 2), [{}, {"eps": 0.1}]),
    "layer": (_layer, (0, 1, 2), [{}, {"eps": 0.1}]),
    "instance": (_instance, (1, 2), [{}, {"eps": 0.1}]),
    "group": (_group, (0, 1, 2), [{}, {"groups": 4}, {"groups": 2, "eps": 0.1}]),
}


@pytest.mark.parametrize("dims", [0, 1, 2])
@pytest.mark.parametrize("name", NORMS.names())
def test_norm_matches_functional_reference(name: str, dims: int) -> None:
    if name not in REFERENCES:
        pytest.fail(f"norm {name!r} is registered but has no functional reference in this test")
    reference, supported, param_sets = REFERENCES[name]
    if dims not in supported:
        with pytest.raises(RecipeError):
            NORMS.build(name, context={"channels": CHANNELS, "dims": dims})
        return
    gen = torch.Generator().manual_seed(dims)
    for params in param_sets:
        module = NORMS.build(name, context={"channels": CHANNELS, "dims": dims}, **params)
        module = module.double().train()
        eps = params.get("eps", 1e-5)
        affine = list(module.parameters())
        assert len(affine) in (0, 2), f"{name}: expected weight and bias, got {len(affine)}"
        with torch.no_grad():
            for p in affine:
                assert p.shape == (CHANNELS,), f"{name} dims={dims}: affine shape {p.shape}"
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) + 1.0)
        w, b = (affine[0], affine[1]) if affine else (None, None)

        # a small input variance makes eps matter; a channel offset makes the axes matter
        shape = SHAPES[dims]
        offset = torch.arange(CHANNELS, dtype=torch.float64).reshape(1, -1, *([1] * dims))
        x0 = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.3 + offset
        upstream = torch.randn(shape, generator=gen, dtype=torch.float64)

        x = x0.clone().requires_grad_(True)
        out = module(x)
        grads = torch.autograd.grad(out, [x, *affine], upstream)

        xr = x0.clone().requires_grad_(True)
        wr = None if w is None else w.detach().clone().requires_grad_(True)
        br = None if b is None else b.detach().clone().requires_grad_(True)
        ref = reference(xr, wr, br, eps, params)
        ref_grads = torch.autograd.grad(
            ref, [xr, *(t for t in (wr, br) if t is not None)], upstream
        )
        tag = f"{name} dims={dims} {params}"
        assert out.shape == x0.shape
        torch.testing.assert_close(out, ref, msg=lambda m, tag=tag: f"{tag} output: {m}")
        for i, (g, gr) in enumerate(zip(grads, ref_grads, strict=True)):
            torch.testing.assert_close(g, gr, msg=lambda m, i=i, tag=tag: f"{tag} grad {i}: {m}")


@pytest.mark.parametrize("name", NORMS.names())
def test_norm_params_accept_eps(name: str) -> None:
    """Every parameter a norm declares is accepted by build (no context key leaks in)."""
    params = NORMS.get(name).params()
    assert "channels" not in params and "dims" not in params
    NORMS.build(name, context={"channels": CHANNELS, "dims": 2}, **params)


def test_instance_norm_refuses_feature_vectors() -> None:
    with pytest.raises(RecipeError, match="instance"):
        NORMS.build("instance", context={"channels": CHANNELS, "dims": 0})


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_group_norm_refuses_indivisible_channels(dims: int) -> None:
    with pytest.raises(RecipeError, match="groups"):
        NORMS.build("group", context={"channels": 12, "dims": dims})
    with pytest.raises(RecipeError):
        NORMS.build("group", context={"channels": 16, "dims": dims}, groups=3)
    NORMS.build("group", context={"channels": 12, "dims": dims}, groups=4)  # divisible: fine


@pytest.mark.parametrize("dims", [0, 1, 2])
def test_batch_norm_tracks_running_stats_with_momentum(dims: int) -> None:
    module = NORMS.build("batch", context={"channels": CHANNELS, "dims": dims}, momentum=0.25)
    x = torch.randn(SHAPES[dims]) * 2.0 + 3.0
    module.train()(x)
    reduce = [d for d in range(x.ndim) if d != 1]
    torch.testing.assert_close(module.running_mean, 0.25 * x.mean(reduce))
    torch.testing.assert_close(
        module.running_var, 0.75 * torch.ones(CHANNELS) + 0.25 * x.var(reduce, unbiased=True)
    )


def test_unknown_norm_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="did you mean 'batch'"):
        NORMS.build("batchh", context={"channels": CHANNELS, "dims": 2})
