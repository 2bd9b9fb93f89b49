"""Model-level regularisers against their definitions: dropout (drop vs keep probability),
DropConnect (Wan et al. 2013), fractional max pooling (Graham 2014) and stochastic depth (Huang et
al. 2016, the lecture's linear decay). Random layers are checked statistically with a fixed seed
and bounds of about 5 standard errors, so they fail when the expectation or the rate is wrong.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.errors import RecipeError
from trainlab.nn.models import BasicBlock, create_model
from trainlab.nn.regularizers import (
    DropConnectConv1d,
    DropConnectConv2d,
    DropConnectLinear,
    FractionalMaxPool,
    survival_probabilities,
)
from trainlab.recipe import ModelConfig, validate

# ---------------------------------------------------------------------------------------------
# dropout: torch's p is the DROP probability, the lecture's p the KEEP probability


@pytest.mark.parametrize(
    "given, drop", [(0.2, 0.2), ({"drop": 0.3}, 0.3), ({"keep": 0.8}, 0.2), ({"keep": 1}, 0.0)]
)
def test_dropout_is_stored_as_the_drop_probability(given, drop: float):
    recipe = validate({"model": {"dropout": given}})
    assert recipe.model.dropout == drop  # exactly: keep 0.8 is drop 0.2, not 0.19999999999999996
    assert "dropout: " + str(drop) in recipe.to_yaml()


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"drop": 0.2, "keep": 0.8}, "model.dropout: give drop or keep"),
        ({"keep": 0}, "model.dropout: keep is the keep probability, in (0, 1]; got 0"),
        ({"keep": 1.5}, "model.dropout: keep is the keep probability"),
        ({"drop": 1.0}, "model.dropout: Input should be less than 1"),
        ({"drop": -0.1}, "model.dropout: Input should be greater than or equal to 0"),
        ({"p": 0.5}, "model.dropout: expected a drop probability p"),
        (1.0, "model.dropout: Input should be less than 1"),
    ],
)
def test_dropout_errors_are_one_line(given, expected: str):
    with pytest.raises(RecipeError) as info:
        validate({"model": {"dropout": given}})
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_inverted_dropout_keeps_the_expectation():
    model = create_model(ModelConfig.model_validate({"dropout": {"keep": 0.8}}), (4,), 2)
    (drop,) = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drop.p == 0.2
    torch.manual_seed(0)
    x = torch.randn(1, 500).expand(4000, 500)  # 4000 independent masks of the same row
    out = drop.train()(x)
    zeroed = (out == 0).float().mean().item()
    assert zeroed == pytest.approx(0.2, abs=5 * math.sqrt(0.2 * 0.8 / out.numel()))
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / 0.8)  # inverted: kept units scaled by 1/keep
    # E[dropout(x)] = x; per element the mean of n masks has std |x| sqrt(p / (1 - p) / n)
    se = x[0].abs() * math.sqrt(0.2 / 0.8 / x.shape[0])
    assert ((out.mean(0) - x[0]).abs() <= 5 * se + 1e-6).all()
    assert torch.equal(drop.eval()(x), x)  # eval: the identity


# ---------------------------------------------------------------------------------------------
# DropConnect: each weight zeroed with probability p, kept ones scaled by 1 / (1 - p)

P = 0.3
LAYERS = {
    "linear": (DropConnectLinear, nn.Linear, (24, 6), {}, (5, 24)),
    "conv1d": (DropConnectConv1d, nn.Conv1d, (3, 4, 3), {"padding": 1}, (2, 3, 7)),
    "conv2d": (DropConnectConv2d, nn.Conv2d, (3, 4, 3), {"stride": 2}, (2, 3, 7, 7)),
}


def _pair(kind: str) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """A DropConnect layer and the plain torch layer holding the same weights, and an input."""
    cls, plain_cls, args, kwargs, x_shape = LAYERS[kind]
    torch.manual_seed(0)
    layer, plain = cls(*args, p=P, **kwargs), plain_cls(*args, **kwargs)
    plain.load_state_dict(layer.state_dict(), strict=True)
    return layer, plain, torch.randn(*x_shape)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_dropconnect_eval_is_the_plain_layer(kind: str):
    layer, plain, x = _pair(kind)
    assert list(layer.state_dict()) == list(plain.state_dict())  # no extra keys
    assert torch.equal(layer.eval()(x), plain(x))
    assert torch.equal(layer.masked_weight(), layer.weight)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_dropconnect_masks_weights_at_rate_p(kind: str):
    layer, _, _ = _pair(kind)
    layer.train()
    torch.manual_seed(1)
    masked = torch.stack([layer.masked_weight().detach() for _ in range(400)])
    zeroed = (masked == 0).float().mean().item()
    assert zeroed == pytest.approx(P, abs=5 * math.sqrt(P * (1 - P) / masked.numel()))
    kept = masked != 0
    scaled = (layer.weight.detach() / (1 - P)).expand_as(masked)
    torch.testing.assert_close(masked[kept], scaled[kept])


@pytest.mark.parametrize("kind", list(LAYERS))
def test_dropconnect_expectation_is_the_plain_layer(kind: str):
    layer, plain, x = _pair(kind)
    layer.train()
    torch.manual_seed(2)
    with torch.no_grad():
        outs = torch.stack([layer(x) for _ in range(3000)])  # one mask per forward call
        ref = plain(x)
    se = outs.std(0) / math.sqrt(outs.shape[0])
    assert ((outs.mean(0) - ref).abs() <= 5 * se + 1e-5).all()
    # and one mask is shared by the whole batch: examples that are equal stay equal
    same = x[:1].expand(3, *x.shape[1:])
    out = layer(same)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_dropconnect_gradient_flows_through_the_kept_weights_only():
    layer = DropConnectLinear(24, 6, p=P)
    x = torch.randn(5, 24)
    torch.manual_seed(3)
    masked = layer.masked_weight().detach()
    torch.manual_seed(3)  # the same mask again
    layer(x).sum().backward()
    # d/dW sum(x (W * m / (1 - p))^T) = m / (1 - p) * sum_n x_n, row by row
    expected = (masked != 0).float() / (1 - P) * x.sum(0)
    torch.testing.assert_close(layer.weight.grad, expected)
    torch.testing.assert_close(layer.bias.grad, torch.full((6,), 5.0))  # the bias is never dropped


# ---------------------------------------------------------------------------------------------
# fractional max pooling: random regions in training, a fixed grid in eval


def test_fractional_pooling_output_shapes():
    r = 1 / math.sqrt(2)
    assert FractionalMaxPool(r, 2)(torch.randn(2, 3, 16, 13)).shape == (2, 3, 11, 9)
    assert FractionalMaxPool(r, 1)(torch.randn(2, 3, 40)).shape == (2, 3, 28)
    model = create_model(
        ModelConfig.model_validate(
            {"name": "convnet", "channels": [4, 4, 4], "pool": "fractional"}
        ),
        (3, 16, 16),
        5,
    )
    sizes = []
    x = torch.randn(2, 3, 16, 16)
    for m in model:
        x = m(x)
        if isinstance(m, FractionalMaxPool):
            sizes.append(x.shape[-1])
    assert sizes == [11, 7, 4]  # int(16 / sqrt 2), int(11 / sqrt 2), int(7 / sqrt 2)


@pytest.mark.parametrize("dims, shape", [(2, (3, 4, 16, 16)), (1, (3, 4, 40))])
def test_fractional_pooling_regions_vary_in_training_only(dims: int, shape: tuple):
    pool = FractionalMaxPool(1 / math.sqrt(2), dims)
    x = torch.randn(*shape)
    assert not torch.equal(pool(x), pool(x))  # new regions each call
    torch.manual_seed(5)
    a = pool(x)
    torch.manual_seed(5)
    assert torch.equal(a, pool(x))  # drawn from torch's RNG: a seed reproduces them
    pool.eval()
    assert torch.equal(pool(x), pool(x))


def test_fractional_pooling_2d_is_torchs_and_1d_follows_the_interval_formula():
    r = 1 / math.sqrt(2)
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(6)
    ours = FractionalMaxPool(r, 2)(x)
    torch.manual_seed(6)
    torch.testing.assert_close(ours, nn.FractionalMaxPool2d(2, output_ratio=r)(x), rtol=0, atol=0)
    # eval grid of a sequence: windows [s_j, s_j + 1], s_j = int((j + u) alpha) - int(u alpha),
    # u = 0.5, alpha = (L - 2) / (out - 1), the last window ending at the last element
    length, out_len, u = 40, 28, 0.5
    alpha = (length - 2) / (out_len - 1)
    starts = [int((j + u) * alpha) - int(u * alpha) for j in range(out_len - 1)] + [length - 2]
    seq = torch.randn(2, 3, length)
    expected = torch.stack([seq[..., s : s + 2].amax(-1) for s in starts], dim=-1)
    torch.testing.assert_close(FractionalMaxPool(r, 1).eval()(seq), expected, rtol=0, atol=0)
    assert F.max_pool1d(seq, 2).shape[-1] == 20  # fractional keeps more positions than 2x2


# ---------------------------------------------------------------------------------------------
# stochastic depth: p_l = 1 - l/L (1 - p_L), the branch dropped per example


@pytest.mark.parametrize("num_blocks, last_drop", [(1, 0.5), (4, 0.2), (9, 0.5), (5, 0.0)])
def test_survival_probabilities_are_the_lecture_formula(num_blocks: int, last_drop: float):
    p_last = 1.0 - last_drop
    expected = [1.0 - l_ / num_blocks * (1.0 - p_last) for l_ in range(1, num_blocks + 1)]
    got = survival_probabilities(num_blocks, last_drop)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert got[-1] == pytest.approx(p_last) and all(
        a >= b for a, b in zip(got, got[1:], strict=False)
    )


def test_a_block_drops_its_branch_for_one_minus_p_l_of_the_examples():
    cfg = {"name": "resnet", "channels": [4], "depth": 2, "stochastic_depth": 0.5}
    model = create_model(ModelConfig.model_validate(cfg), (4, 3, 3), 2)
    first, last = [m for m in model.modules() if isinstance(m, BasicBlock)]
    torch.manual_seed(7)
    x = torch.randn(2000, 4, 3, 3)
    for block, drop in ((first, 0.25), (last, 0.5)):
        block.train()
        assert block.drop_path.p == pytest.approx(drop)
        with torch.no_grad():
            branch = block.norm2(block.conv2(block.act1(block.norm1(block.conv1(x)))))
            out = block(x)
        skip = block.act2(block.shortcut(x))
        dropped = (out == skip).flatten(1).all(1)
        assert dropped.float().mean().item() == pytest.approx(drop, abs=5 * math.sqrt(0.25 / 2000))
        kept = block.act2(branch / (1 - drop) + block.shortcut(x))  # inverted: kept scaled
        torch.testing.assert_close(out[~dropped], kept[~dropped])


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_branch_drop_draws_what_torchvision_draws(p: float):
    """BranchDrop is torchvision's StochasticDepth(p, "row") without importing torchvision.ops
    at start-up: same output and same gradient from the same generator state, in training;
    the identity at eval."""
    from torchvision.ops import StochasticDepth

    from trainlab.nn.regularizers import BranchDrop

    x = torch.randn(64, 3, 4, 4, requires_grad=True)
    ours, theirs = BranchDrop(p), StochasticDepth(p, "row")
    torch.manual_seed(7)
    a = ours(x)
    (ga,) = torch.autograd.grad(a.square().sum(), x)
    torch.manual_seed(7)
    b = theirs(x)
    (gb,) = torch.autograd.grad(b.square().sum(), x)
    assert torch.equal(a, b) and torch.equal(ga, gb)
    ours.eval()
    assert ours(x) is x


def test_trainlab_starts_without_torchvision_ops():
    """Importing the training loop does not import torchvision.ops (and torch._dynamo with it):
    `trainlab list` and `trainlab evaluate` build no optimiser and need neither."""
    import subprocess
    import sys

    code = (
        "import sys, trainlab.engine.loop, trainlab.nn.regularizers\n"
        "assert 'torchvision.ops' not in sys.modules, 'torchvision.ops imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
