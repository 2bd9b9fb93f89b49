"""Model families: shapes for 1-D and 2-D inputs, recipe choices applied, residual zero-init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.errors import RecipeError
from trainlab.nn.models import MODELS, BasicBlock, create_model
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
