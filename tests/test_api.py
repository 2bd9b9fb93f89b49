"""The Python API in the shape PyTorch users expect: mapping overrides, callbacks, a model
class or instance, a RunResult to select on, and the README's Optuna-style objective."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import trainlab
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
QUICK = {"training.epochs": 2, "training.progress": False}


class TinyNet(nn.Module):
    """A user's model: takes num_classes and in_shape, initialises itself its own way."""

    def __init__(self, num_classes: int, in_shape: tuple[int, ...], hidden: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(int(torch.tensor(in_shape).prod()), hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, num_classes)
        nn.init.constant_(self.head.bias, 0.25)  # kaiming_normal would zero it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_overrides_as_a_mapping_keep_their_values():
    recipe = trainlab.resolve_recipe(
        None, {"optimizer.lr": 3e-3, "model.widths": [7, 5], "augment": []}
    )
    assert recipe.optimizer.lr == 3e-3 and recipe.model.widths == [7, 5] and recipe.augment == []
    same = trainlab.resolve_recipe(None, ["optimizer.lr=3e-3", "model.widths=[7, 5]", "augment=[]"])
    assert same == recipe


def test_run_result_selects_on_validation(tmp_path: Path):
    result = trainlab.train(None, QUICK, out=tmp_path / "run", progress=False)
    assert isinstance(result, trainlab.RunResult) and result.run_dir == tmp_path / "run"
    calibration = {"nll", "ece", "brier"}
    assert set(result.val) == {"epoch", "val_loss", "val_acc", "val_top5"} | {
        f"val_{k}" for k in calibration
    }
    assert set(result.test) == {"test_loss", "test_acc", "test_top5"} | {
        f"test_{k}" for k in calibration
    }
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary == result.summary
    assert summary["val"]["best"] == result.val and summary["val"]["final"]["val_acc"] > 0
    assert summary["trainlab_version"] == trainlab.__version__
    assert summary["torch_version"] == torch.__version__ and summary["device"] == "cpu"
    commit = summary["git_commit"]  # this checkout's commit, when tests run from one
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert trainlab.RunResult.load(tmp_path / "run") == result


def test_a_model_class_is_built_by_its_import_path_and_keeps_its_init(tmp_path: Path):
    result = trainlab.train(None, QUICK, out=tmp_path / "run", model=TinyNet, progress=False)
    recipe = trainlab.load_recipe(tmp_path / "run" / "recipe.yaml")
    assert recipe.model.name == "tests.test_api:TinyNet" and recipe.model.init.name == "keep"
    assert result.test["test_acc"] > 0.3
    parts = trainlab.build(recipe)
    assert torch.equal(parts.model.head.bias, torch.full((10,), 0.25))  # its own init
    assert trainlab.load_run(tmp_path / "run").predict_proba(parts.splits.x_test[:2]).shape == (
        2,
        10,
    )


def test_a_model_instance_is_trained_as_given(tmp_path: Path):
    net = TinyNet(10, (1, 8, 8), hidden=8)
    before = net.body[1].weight.detach().clone()
    overrides = {**QUICK, "model.kwargs": {"hidden": 8}}
    trainlab.train(None, overrides, out=tmp_path / "run", model=net, progress=False)
    assert not torch.equal(net.body[1].weight, before)  # this very instance was trained
    reloaded = trainlab.load_run(tmp_path / "run").model
    assert torch.equal(reloaded.body[1].weight, net.body[1].weight.cpu())


def test_a_named_init_is_applied_to_a_users_model():
    recipe = trainlab.resolve_recipe(
        None, {"model.name": "tests.test_api:TinyNet", "model.init": "kaiming_normal"}
    )
    assert torch.equal(trainlab.build(recipe).model.head.bias, torch.zeros(10))


def test_a_class_from_main_is_refused_in_one_line(tmp_path: Path):
    Main = type("Main", (TinyNet,), {"__module__": "__main__"})
    with pytest.raises(trainlab.RecipeError, match="defined in __main__ .* cannot be imported"):
        trainlab.train(None, QUICK, out=tmp_path / "run", model=Main)

    class Local(TinyNet):
        pass

    with pytest.raises(trainlab.RecipeError, match="defined inside a function"):
        trainlab.train(None, QUICK, out=tmp_path / "run", model=Local)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.name=tests.test_api:TinyNet", "model.kwargs={num_classes: 3}"],
            "model.kwargs.num_classes: trainlab passes num_classes from the data",
        ),
        (
            ["model.name=tv.resnet18", "model.kwargs={weights: IMAGENET1K_V1}"],
            "model.kwargs.weights='IMAGENET1K_V1' names torchvision weights, and nothing is downloaded",  # noqa: E501
        ),
    ],
)
def test_keyword_collisions_exit_2_in_one_line(tmp_path: Path, overrides, message):
    result = run_cli("train", *overrides, "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_callbacks_must_be_callbacks(tmp_path: Path):
    with pytest.raises(TypeError, match="is not a trainlab.Callback"):
        trainlab.train(None, QUICK, out=tmp_path / "run", callbacks=[print])


class FakeTrial:
    """The part of optuna.Trial the README's objective uses: suggest, report, should_prune."""

    def __init__(self, number: int, prune_after: int | None = None) -> None:
        self.number, self.prune_after = number, prune_after
        self.reports: list[tuple[int, float]] = []
        self.params: dict[str, float] = {}

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        self.params[name] = (low * high) ** 0.5 if log else (low + high) / 2
        return self.params[name]

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune_after is not None and len(self.reports) >= self.prune_after


def _readme_objective() -> str:
    text = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def objective" in b)
    return block


def test_the_readme_objective_runs_and_can_stop_a_run(tmp_path: Path, monkeypatch):
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_objective(), "README.md", "exec"), namespace)
    full = FakeTrial(0)
    value = namespace["objective"](full)
    summary = json.loads((tmp_path / "runs" / "trial-0" / "summary.json").read_text())
    assert value == summary["val"]["best"]["val_acc"] and len(full.reports) == 5
    assert full.params["lr"] == pytest.approx(1e-4**0.5 * 1e-1**0.5)
    pruned = FakeTrial(1, prune_after=2)
    namespace["objective"](pruned)
    summary = json.loads((tmp_path / "runs" / "trial-1" / "summary.json").read_text())
    assert summary["stop_reason"] == "pruned" and summary["epochs_run"] == 2


def test_torchvision_models_keep_their_init_by_default():
    tv = trainlab.resolve_recipe(None, {"model.name": "tv.resnet18"})
    ours = trainlab.resolve_recipe(None, {"model.name": "resnet"})
    assert tv.model.init.name == "keep" and ours.model.init.name == "kaiming_normal"


def test_the_public_names_and_no_shadowed_package():
    import trainlab.engine.callbacks

    for name in ("Trainer", "Callback", "Finding", "RunResult", "build", "load_run", "Step"):
        assert name in trainlab.__all__ and getattr(trainlab, name) is not None
    assert trainlab.Callback is trainlab.engine.callbacks.Callback
    assert callable(trainlab.train)  # the function: no package of that name shadows it
    assert "check" in trainlab.list_components() and "model" in trainlab.list_components()
