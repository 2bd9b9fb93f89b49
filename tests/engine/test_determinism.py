"""``training.deterministic``: torch's switch set every way, and an op without a deterministic
kernel named in one line (before training, or at the step where it first runs)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import trainlab
from tests.conftest import run_cli
from trainlab.errors import RecipeError

BASE = [
    "training.progress=false",
    "augment=[]",
    "training.epochs=1",
    "schedule=constant",
    "data.val_fraction=0",
]


class PutNet(nn.Module):
    """Calls ``Tensor.put_`` (no deterministic CPU kernel in torch 2.x) in training mode, and
    also in eval mode when ``always`` is set: the op either meets the pre-training check or
    only the first training step."""

    def __init__(self, num_classes: int, in_shape: tuple, always: bool = False) -> None:
        super().__init__()
        self.always = always
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(int(torch.tensor(in_shape).prod()), num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.training or self.always:
            scratch = torch.zeros(4)
            scratch.put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
        return out


def _put(always: bool, mode: str) -> list[str]:
    return [
        *BASE,
        "model.name=tests.engine.test_determinism:PutNet",
        f"model.kwargs={{always: {str(always).lower()}}}",
        f"training.deterministic={mode}",
    ]


def test_an_op_in_the_forward_pass_is_named_before_any_folder(tmp_path: Path):
    with pytest.raises(RecipeError) as info:
        trainlab.train(None, _put(True, "true"), out=tmp_path / "run", progress=False)
    message = str(info.value)
    assert message.startswith("training.deterministic=true: put_ has no deterministic")
    assert "on cpu (in the check before training)" in message and "warn" in message
    assert "\n" not in message
    assert not (tmp_path / "run").exists()


def test_an_op_met_only_in_training_is_named_with_its_step(tmp_path: Path):
    with pytest.raises(RecipeError, match=r"put_ has no deterministic .* \(at step 1\)"):
        trainlab.train(None, _put(False, "true"), out=tmp_path / "run", progress=False)


def test_warn_runs_the_op_and_says_so(tmp_path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = trainlab.train(
            None, _put(True, "warn"), out=tmp_path / "run", progress=False
        ).summary
    assert summary["epochs_run"] == 1
    assert any(
        "put_ does not have a deterministic implementation" in str(w.message) for w in caught
    )
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's switch is back


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path):
    result = run_cli("train", *_put(True, "true"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "put_ has no deterministic implementation on cpu" in lines[0]
    assert "Traceback" not in result.stderr
