"""trainlab.nn.transfer: the head, the backbone's blocks, and loading the tensors that fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.nn.models import create_model
from trainlab.nn.transfer import (
    backbone_blocks,
    head_module,
    head_parameters,
    load_matching,
    unwrap_state,
)
from trainlab.recipe import ModelConfig


def _model(name: str, classes: int = 5, **keys) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({"name": name, **keys})
    shape = (1, 40) if name != "mlp" else (1, 8, 8)
    return create_model(cfg, shape, classes)


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("mlp", {"widths": [16, 8]}),
        ("convnet", {"channels": [4, 8], "depth": 1, "widths": [6]}),
        ("resnet", {"channels": [4, 8], "depth": 1, "widths": []}),
    ],
)
def test_the_head_is_the_layer_the_classes_come_out_of(name: str, keys: dict):
    model = _model(name, 7, **keys)
    head = model.get_submodule(head_module(model))
    assert isinstance(head, nn.Linear) and head.out_features == 7
    assert head is list(model.children())[-1]  # trainlab's models end in the classifier
    names = head_parameters(model)
    assert names == [f"{head_module(model)}.weight", f"{head_module(model)}.bias"]


def test_torchvision_heads_are_found_by_the_same_rule():
    import torchvision

    assert head_module(torchvision.models.resnet18(num_classes=3)) == "fc"
    assert head_module(torchvision.models.mobilenet_v3_small(num_classes=3)) == "classifier.3"


def test_backbone_blocks_are_top_level_children_input_to_output():
    model = _model("mlp", widths=[16, 8], norm="batch")  # 1 Linear, 2 BN, 5 Linear, 6 BN, 9 head
    blocks = backbone_blocks(model, set(head_parameters(model)))
    assert blocks == [
        ["1.weight", "1.bias"], ["2.weight", "2.bias"], ["5.weight", "5.bias"],
        ["6.weight", "6.bias"],
    ]  # fmt: skip
    wrapped = nn.Sequential(model)  # one wrapper child is descended through
    assert backbone_blocks(wrapped, {f"0.{n}" for n in head_parameters(model)})[0] == [
        "0.1.weight",
        "0.1.bias",
    ]


def test_matching_tensors_are_copied_and_the_new_head_is_left_alone():
    source = _model("mlp", 5, widths=[16], norm="batch")
    with torch.no_grad():  # running statistics that differ from a fresh model's
        source[2].running_mean.add_(3.0)
    target = _model("mlp", 10, widths=[16], norm="batch")
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    match = load_matching(target, source.state_dict())
    state = target.state_dict()
    assert set(match.mismatched) == {"5.weight", "5.bias"}
    assert match.mismatched["5.weight"] == ((10, 16), (5, 16))
    for name, tensor in source.state_dict().items():
        if name in match.mismatched:
            assert torch.equal(state[name], fresh[name])  # the fresh init, untouched
        else:
            assert torch.equal(state[name], tensor)  # buffers too
    assert match.loaded_parameters == ["1.weight", "1.bias", "2.weight", "2.bias"]
    assert "2.running_mean" in match.loaded and "2.running_mean" not in match.loaded_parameters


def test_unwrap_state_finds_the_state_dict_in_common_layouts():
    weights = {"0.weight": torch.ones(2, 2)}
    assert unwrap_state(weights) == weights
    assert unwrap_state({"module.0.weight": weights["0.weight"]}) == weights  # DDP
    assert unwrap_state({"state_dict": weights, "epoch": 3}) == weights
    run = {"model.0.weight": weights["0.weight"], "preprocess.mean": torch.zeros(1)}
    assert unwrap_state(run) == weights  # a trainlab run's model.safetensors
    assert unwrap_state({"epoch": 3}) is None
    assert unwrap_state([1, 2]) is None
