"""Model families: shapes for 1-D and 2-D inputs, recipe choices applied, residual zero-init,
width-reducing units (SwiGLU, Maxout), DropConnect, pooling choices and stochastic depth."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock as TvBasic
from torchvision.models.resnet import Bottleneck as TvBottleneck

from trainlab.errors import RecipeError
from trainlab.nn.activations import Maxout, SwiGLU
from trainlab.nn.models import MODELS, BasicBlock, create_model
from trainlab.nn.regularizers import (
    BranchDrop,
    DropConnectConv1d,
    DropConnectConv2d,
    DropConnectLinear,
    FractionalMaxPool,
)
from trainlab.recipe import ModelConfig

SHAPES = {"features": (12,), "sequence": (1, 40), "image": (3, 16, 16)}


def _cfg(**kw) -> ModelConfig:
    return ModelConfig.model_validate({"channels": [8, 16], "widths": [16], **kw})


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_model_maps_examples_to_class_scores(name: str, shape: str):
    in_shape = SHAPES[shape]
    if name != "mlp" and shape == "features":
        with pytest.raises(RecipeError, match="use model.name=mlp"):
            create_model(_cfg(name=name), in_shape, 7)
        return
    model = create_model(_cfg(name=name, norm="batch", dropout=0.1), in_shape, 7)
    x = torch.randn(5, *in_shape, requires_grad=True)
    out = model(x)
    assert out.shape == (5, 7)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_conv_models_pick_1d_or_2d_layers_from_the_input():
    seq = create_model(_cfg(name="convnet"), SHAPES["sequence"], 3)
    img = create_model(_cfg(name="convnet"), SHAPES["image"], 3)
    assert any(isinstance(m, nn.Conv1d) for m in seq.modules())
    assert any(isinstance(m, nn.Conv2d) for m in img.modules())


@pytest.mark.parametrize(
    "activation, cls",
    [("tanh", nn.Tanh), ({"name": "leaky_relu", "alpha": 0.2}, nn.LeakyReLU), ("gelu", nn.GELU)],
)
def test_the_recipe_activation_is_used_everywhere(activation, cls):
    for name in ("mlp", "convnet", "resnet"):
        model = create_model(_cfg(name=name, activation=activation), SHAPES["image"], 4)
        acts = [
            m for m in model.modules() if isinstance(m, nn.ReLU | nn.Tanh | nn.LeakyReLU | nn.GELU)
        ]
        assert acts and all(isinstance(m, cls) for m in acts), name
    leaky = create_model(_cfg(name="mlp", activation=activation), (4,), 2)
    if cls is nn.LeakyReLU:
        assert all(m.negative_slope == 0.2 for m in leaky.modules() if isinstance(m, nn.LeakyReLU))


@pytest.mark.parametrize(
    "norm, cls",
    [
        ("batch", nn.BatchNorm2d),
        ("layer", nn.GroupNorm),
        ({"name": "group", "groups": 4}, nn.GroupNorm),
        ("instance", nn.GroupNorm),
    ],
)
def test_the_recipe_norm_is_used_in_conv_models(norm, cls):
    model = create_model(_cfg(name="resnet", norm=norm), SHAPES["image"], 4)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | nn.GroupNorm)]
    assert norms and all(isinstance(m, cls) for m in norms)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)  # a norm follows every conv: its bias is redundant


def test_dropout_is_inverted_and_off_in_eval():
    model = create_model(_cfg(name="mlp", dropout=0.5, widths=[64]), (16,), 3)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(d.p == 0.5 for d in drops)
    model.eval()
    x = torch.randn(4, 16)
    assert torch.equal(model(x), model(x))


def test_zero_init_residual_makes_every_block_start_as_identity():
    model = create_model(
        _cfg(name="resnet", norm="batch", zero_init_residual=True), SHAPES["image"], 4
    )
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert blocks
    for block in blocks:
        assert torch.count_nonzero(block.norm2.weight) == 0
        x = torch.randn(2, block.conv1.in_channels, 8, 8)
        block.eval()
        if isinstance(block.shortcut, nn.Identity):
            torch.testing.assert_close(block(x), block.act2(x))
    without = create_model(
        _cfg(name="resnet", norm="none", zero_init_residual=True), SHAPES["image"], 4
    )
    assert all(
        torch.count_nonzero(b.conv2.weight) == 0
        for b in without.modules()
        if isinstance(b, BasicBlock)
    )


class TvBlocks(nn.Module):
    """A user model made of torchvision's residual blocks (Bottleneck as in resnet50)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        down = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.blocks = nn.Sequential(
            TvBasic(8, 8), TvBottleneck(8, 4, downsample=down), TvBasic(16, 16)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.head(self.blocks(x))


def test_zero_init_residual_reaches_torchvision_blocks():
    model = create_model(
        _cfg(name="tests.nn.test_models:TvBlocks", zero_init_residual=True), (8, 6, 6), 3
    )
    basic, bottleneck, _ = model.blocks
    assert torch.count_nonzero(basic.bn2.weight) == 0 and torch.count_nonzero(basic.bn1.weight) > 0
    assert torch.count_nonzero(bottleneck.bn3.weight) == 0
    model.eval()
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(basic(x), torch.relu(x))  # the block starts as the identity
    # tv models without norms: the branch's last conv is zeroed instead
    tv = create_model(
        _cfg(name="tv.resnet18", norm="none", zero_init_residual=True), (3, 32, 32), 4
    )
    assert isinstance(tv.layer1[0].bn2, nn.Identity)
    assert all(
        torch.count_nonzero(b.conv2.weight) == 0 for b in tv.modules() if isinstance(b, TvBasic)
    )


def test_zero_init_residual_needs_residual_blocks():
    with pytest.raises(RecipeError, match="no residual blocks"):
        create_model(_cfg(name="mlp", zero_init_residual=True), (8,), 2)


def test_torchvision_models_by_name_take_the_recipe_choices():
    model = create_model(
        _cfg(name="tv.resnet18", activation="silu", norm="group", zero_init_residual=True),
        (3, 32, 32),
        10,
    )
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0
    with pytest.raises(RecipeError, match="torchvision has no model"):
        create_model(_cfg(name="tv.resnet19"), (3, 32, 32), 10)


class TinyNet(nn.Module):
    """A user model: receives num_classes and in_shape when its constructor asks for them."""

    def __init__(self, num_classes: int, in_shape: tuple, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(int(torch.tensor(in_shape).prod()), hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)


def test_a_user_class_by_import_path():
    model = create_model(
        _cfg(name="tests.nn.test_models:TinyNet", kwargs={"hidden": 5}, init="zeros"), (2, 3), 4
    )
    assert model.net[1].out_features == 5
    assert torch.count_nonzero(model.net[1].weight) == 0  # the recipe's init is applied
    with pytest.raises(RecipeError, match="cannot import"):
        create_model(_cfg(name="tests.nn.test_models:Nope"), (2, 3), 4)


# ---------------------------------------------------------------------------------------------
# width-reducing units: the layer before is widened, every model trains with them

UNITS = {"swiglu": (SwiGLU, 2), "maxout": (Maxout, 2), "maxout3": (Maxout, 3)}


def _unit(name: str):
    return {"name": "maxout", "k": 3} if name == "maxout3" else name


# conv models refuse feature vectors (tested above)
BUILDABLE = [(n, s) for n in MODELS.names() for s in SHAPES if n == "mlp" or s != "features"]


@pytest.mark.parametrize("unit", list(UNITS))
@pytest.mark.parametrize("name, shape", BUILDABLE)
def test_every_model_runs_with_width_reducing_units(unit: str, name: str, shape: str):
    in_shape = SHAPES[shape]
    cls, expansion = UNITS[unit]
    cfg = _cfg(name=name, activation=_unit(unit), norm="batch", widths=[6])
    model = create_model(cfg, in_shape, 7)
    units = [m for m in model.modules() if isinstance(m, cls)]
    assert units and all(u.expansion == expansion for u in units)
    x = torch.randn(4, *in_shape, requires_grad=True)
    out = model(x)
    assert out.shape == (4, 7)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_the_layer_before_a_reducing_unit_is_widened():
    mlp = create_model(_cfg(name="mlp", activation="swiglu", widths=[16, 8], norm="layer"), (5,), 3)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 32), (16, 16), (8, 3)]
    assert [m.normalized_shape for m in mlp.modules() if isinstance(m, nn.LayerNorm)] == [
        (32,),
        (16,),
    ]
    net = create_model(_cfg(name="convnet", activation={"name": "maxout", "k": 3}), (3, 8, 8), 2)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 24), (8, 24), (8, 48), (16, 48)]
    res = create_model(_cfg(name="resnet", activation="swiglu", norm="batch"), (3, 8, 8), 2)
    for block in (m for m in res.modules() if isinstance(m, BasicBlock)):
        c_out = block.conv2.out_channels
        assert block.conv1.out_channels == 2 * c_out and block.conv2.in_channels == c_out
        assert block.norm1.num_features == 2 * c_out
        assert isinstance(block.act2, nn.Identity)  # the residual stream keeps its width
    with pytest.raises(RecipeError, match="changes the width"):
        create_model(_cfg(name="tv.resnet18", activation="swiglu"), (3, 32, 32), 10)


# ---------------------------------------------------------------------------------------------
# DropConnect, pooling, stochastic depth: where the recipe puts them

DROPCONNECT = (DropConnectLinear, DropConnectConv1d, DropConnectConv2d)


@pytest.mark.parametrize("name", MODELS.names())
def test_dropconnect_replaces_every_linear_and_conv(name: str):
    in_shape = SHAPES["image"] if name != "mlp" else SHAPES["features"]
    torch.manual_seed(0)
    plain = create_model(_cfg(name=name, widths=[8]), in_shape, 3)
    torch.manual_seed(0)
    dc = create_model(_cfg(name=name, widths=[8], dropconnect=0.3), in_shape, 3)
    weighted = [m for m in dc.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]
    assert weighted and all(isinstance(m, DROPCONNECT) and m.p == 0.3 for m in weighted)
    assert list(dc.state_dict()) == list(plain.state_dict())  # checkpoints are interchangeable
    for key, value in plain.state_dict().items():
        assert torch.equal(value, dc.state_dict()[key]), key  # the init saw the same layers
    x = torch.randn(2, *in_shape)
    torch.testing.assert_close(dc.eval()(x), plain.eval()(x), rtol=0, atol=0)
    with pytest.raises(RecipeError, match="model.dropconnect applies to trainlab's own models"):
        create_model(_cfg(name="tv.resnet18", dropconnect=0.1), (3, 32, 32), 10)


@pytest.mark.parametrize(
    "pool, cls", [("max", nn.MaxPool2d), ("avg", nn.AvgPool2d), ("fractional", FractionalMaxPool)]
)
def test_the_convnet_pools_as_the_recipe_says(pool: str, cls: type):
    model = create_model(_cfg(name="convnet", pool=pool), SHAPES["image"], 3)
    pools = [
        m for m in model.modules() if isinstance(m, nn.MaxPool2d | nn.AvgPool2d | FractionalMaxPool)
    ]
    assert len(pools) == 2 and all(type(p) is cls for p in pools)
    seq = create_model(_cfg(name="convnet", pool=pool, pool_ratio=0.6), SHAPES["sequence"], 3)
    assert seq(torch.randn(2, *SHAPES["sequence"])).shape == (2, 3)
    if pool == "fractional":
        assert all(p.ratio == 0.6 and p.dims == 1 for p in seq.modules() if isinstance(p, cls))
    with pytest.raises(RecipeError, match="model.pool=avg applies to model.name=convnet"):
        create_model(_cfg(name="resnet", pool="avg"), SHAPES["image"], 3)


def test_stochastic_depth_probabilities_follow_the_lecture():
    model = create_model(
        _cfg(name="resnet", channels=[4, 8], depth=2, stochastic_depth=0.3), SHAPES["image"], 3
    )
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 4
    p_last = 1.0 - 0.3  # p_L, the survival probability of the last block
    for depth, block in enumerate(blocks, start=1):
        assert isinstance(block.drop_path, BranchDrop) and block.drop_path.mode == "row"
        survival = 1.0 - depth / 4 * (1.0 - p_last)
        assert 1.0 - block.drop_path.p == pytest.approx(survival, rel=1e-12, abs=1e-12)


def test_stochastic_depth_leaves_eval_unmodified():
    cfg = {"name": "resnet", "channels": [4, 8], "norm": "batch"}
    torch.manual_seed(0)
    plain = create_model(_cfg(**cfg), SHAPES["image"], 3).eval()
    torch.manual_seed(0)
    deep = create_model(_cfg(**cfg, stochastic_depth=0.5), SHAPES["image"], 3).eval()
    x = torch.randn(3, *SHAPES["image"])
    assert torch.equal(deep(x), plain(x)) and torch.equal(deep(x), deep(x))
    deep.train()
    torch.manual_seed(1)
    assert not torch.allclose(deep(x), plain.train()(x))


def test_stochastic_depth_reaches_torchvision_blocks():
    cfg = _cfg(name="tests.nn.test_models:TvBlocks", stochastic_depth=0.6)
    model = create_model(cfg, (8, 6, 6), 3)
    blocks = list(model.blocks)
    drops = [b.stochastic_depth for b in blocks]
    assert [d.p for d in drops] == pytest.approx([0.2, 0.4, 0.6], abs=1e-12)
    assert list(model.state_dict()) == list(
        create_model(_cfg(name=cfg.name), (8, 6, 6), 3).state_dict()
    )
    torch.manual_seed(0)
    x = torch.randn(512, 16, 2, 2)
    last = blocks[2].train()
    with torch.no_grad():
        skipped = (last(x) == torch.relu(x)).flatten(1).all(1).float().mean().item()
    assert skipped == pytest.approx(0.6, abs=0.1)  # 5 sigma of a binomial(512, 0.6) fraction
    # a deep copy (EMA) drops with its own module: its hook is bound to the copy's BranchDrop
    twin = copy.deepcopy(last)
    twin.stochastic_depth.p = 1.0
    with torch.no_grad():
        torch.testing.assert_close(twin(x), torch.relu(x))  # every branch dropped
        skipped = (last(x) == torch.relu(x)).flatten(1).all(1).float().mean().item()
    assert last.stochastic_depth.p == pytest.approx(0.6) and skipped < 0.8


@pytest.mark.parametrize("name", ["mlp", "convnet", "tests.nn.test_models:TinyNet"])
def test_stochastic_depth_needs_residual_blocks(name: str):
    in_shape = (4,) if name == "mlp" else (3, 8, 8)
    with pytest.raises(
        RecipeError, match=r"^model.stochastic_depth=0.1 drops residual branches; [^\n]*$"
    ):
        create_model(_cfg(name=name, stochastic_depth=0.1), in_shape, 2)
