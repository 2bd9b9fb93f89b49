"""Transfer learning in a run: ``model.from``, ``model.freeze`` and discriminative rates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import trainlab
from tests.engine.engine_util import Crash
from trainlab.engine.build import build
from trainlab.engine.callbacks import Callback
from trainlab.engine.loop import Trainer
from trainlab.engine.step import Step
from trainlab.errors import RecipeError, RunFolderError, TrainlabWarning
from trainlab.recipe import recipe_digest, resolve_recipe, validate

# digits (8x8, 10 classes), a small MLP with batch norm: 5 steps an epoch
TINY = [
    "model.name=mlp",
    "model.widths=[16, 8]",
    "model.norm=batch",
    "augment=[]",
    "schedule.warmup_epochs=0",
    "training.epochs=3",
    "training.batch_size=256",
    "training.progress=false",
    "training.log_every=2",
]
FIVE = "data.keep_classes=[0, 1, 2, 3, 4]"
HEAD = ("9.weight", "9.bias")  # mlp widths [16, 8]: 1 Linear 2 BN 5 Linear 6 BN 9 head


def _state_of(overrides: list[str]) -> dict[str, torch.Tensor]:
    return {
        k: v.clone() for k, v in build(resolve_recipe(None, overrides)).model.state_dict().items()
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict[str, torch.Tensor]:
    """A 5-class model's weights (the "pretrained" ones: any values will do for loading)."""
    return _state_of([*TINY, FIVE, "seed=7"])


@pytest.fixture(scope="module")
def pth(tmp_path_factory, source) -> Path:
    path = tmp_path_factory.mktemp("weights") / "pre.pth"
    torch.save(source, path)
    return path


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory) -> Path:
    """A real pretraining run: MNIST-1D digits 0-4, two epochs of a small MLP."""
    run = tmp_path_factory.mktemp("pre") / "run"
    trainlab.train("mnist1d", MNIST1D_PRE, out=run, progress=False, quiet=True)
    return run


MNIST1D = [
    "model.name=mlp",
    "model.widths=[64, 64]",
    "augment=[]",
    "schedule.warmup_epochs=0",
    "training.batch_size=128",
    "training.progress=false",
]
MNIST1D_PRE = [*MNIST1D, "data.keep_classes=[0, 1, 2, 3, 4]", "training.epochs=4"]


# ---------------------------------------------------------------------------------- the recipe


def test_the_recipe_keys_dump_and_load_back(tmp_path: Path):
    recipe = resolve_recipe(
        None,
        [*TINY, "model.from=runs/pre", "model.freeze=2", "optimizer.pretrained_lr_scale=0.1"],
    )
    assert recipe.model.from_ == "runs/pre"
    assert [s.model_dump() for s in recipe.model.freeze.unfreeze] == [{"epoch": 2, "blocks": "all"}]
    dump = recipe.model_dump(mode="json")
    assert dump["model"]["from"] == "runs/pre" and "from_" not in dump["model"]
    again = validate(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe
    assert recipe_digest(again.model_dump(mode="json")) == recipe_digest(dump)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["model.from=IMAGENET1K_V1"], "nothing is downloaded here"),
        (["model.from=ResNet18_Weights.DEFAULT"], "set model.from to that local"),
        (["model.name=tv.resnet18", "model.kwargs.weights=DEFAULT"], "model.kwargs.weights"),
        (["model.from=w.txt"], "expected a run folder or a .safetensors/.pth/.pt file"),
        (["model.freeze=1"], "set model.from"),
        (["optimizer.pretrained_lr_scale=0.1"], "set model.from"),
        (["model.from=w.pt", "model.freeze=3"], "unfreeze[0].epoch=3 is not below"),
        (
            ["model.from=w.pt", "model.freeze.unfreeze=[{epoch: 2}, {epoch: 1, blocks: 2}]"],
            "increasing epochs",
        ),
        (["model.frm=w.pt"], "did you mean model.from?"),
    ],
)
def test_bad_transfer_keys_are_one_line_errors(overrides: list[str], says: str):
    with pytest.raises(RecipeError) as info:
        resolve_recipe(None, [*TINY, *overrides])
    assert says in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_a_weights_file_loads_exactly_the_matching_tensors(tmp_path: Path, source, kind: str):
    path = tmp_path / f"pre.{kind}"
    if kind == "pth":
        torch.save({"state_dict": source, "epoch": 3}, path)  # a checkpoint layout
    else:
        save_file(source, str(path))
    fresh = _state_of(TINY)  # 10 classes: the head does not fit
    with pytest.warns(
        TrainlabWarning,
        match=r"loaded 14 of 16 tensors.*shapes differ: 9\.weight \[10, 8\] here, \[5, 8\] there",
    ):
        parts = build(resolve_recipe(None, [*TINY, f"model.from={path}"]))
    state = parts.model.state_dict()
    for name, tensor in state.items():
        expected = fresh[name] if name in HEAD else source[name]
        assert torch.equal(tensor, expected), name  # the head: the same fresh init as without
    assert state["9.weight"].shape == (10, 8)
    assert set(parts.pretrained) == {f"{i}.{w}" for i in (1, 2, 5, 6) for w in ("weight", "bias")}


def test_a_run_folder_trained_on_other_classes_gives_a_fresh_head(pretrained_run: Path):
    """0-4 -> 5-9: the heads have one shape, but the classes differ: the head is new."""
    pre = load_file(pretrained_run / "model.safetensors")
    after = [*MNIST1D, "data.keep_classes=[5, 6, 7, 8, 9]", "training.epochs=2"]
    fresh = build(resolve_recipe("mnist1d", after)).model.state_dict()
    with pytest.warns(
        TrainlabWarning,
        match=r"new head \(the run was trained on classes 0, 1, 2, 3, 4, this data has 5, 6",
    ):
        parts = build(resolve_recipe("mnist1d", [*after, f"model.from={pretrained_run}"]))
    for name, tensor in parts.model.state_dict().items():
        head = name.startswith("9.")  # widths [64, 64]: Linear 1, Linear 5, head 9
        assert torch.equal(tensor, fresh[name] if head else pre[f"model.{name}"]), name
    assert parts.preprocess.state_dict().keys()  # its own statistics, fitted on 5-9:
    assert not all(
        torch.equal(v, pre[f"preprocess.{k}"]) for k, v in parts.preprocess.state_dict().items()
    )


def _refusal(tmp_path: Path, source_path: str, extra: tuple[str, ...] = ()) -> str:
    with pytest.raises((RecipeError, RunFolderError)) as info:
        build(resolve_recipe(None, [*TINY, f"model.from={source_path}", *extra]))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_unusable_sources_are_one_line_errors(tmp_path: Path, source):
    assert "no such run folder or weights file" in _refusal(tmp_path, str(tmp_path / "no.pth"))
    (tmp_path / "bad.pth").write_bytes(b"not a zip")
    assert "damaged weights file" in _refusal(tmp_path, str(tmp_path / "bad.pth"))
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    assert "damaged safetensors file" in _refusal(tmp_path, str(tmp_path / "bad.safetensors"))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")  # a whole pickled model
    assert "save model.state_dict()" in _refusal(tmp_path, str(tmp_path / "model.pt"))
    other = {f"encoder.{k}": v for k, v in source.items()}  # another architecture's names
    torch.save(other, tmp_path / "other.pt")
    assert "no tensor matches" in _refusal(tmp_path, str(tmp_path / "other.pt"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "recipe.yaml").write_text("name: x\n")
    assert "no model.safetensors yet" in _refusal(tmp_path, str(unfinished))


# ---------------------------------------------------------------------------------- freezing


class Snapshots(Callback):
    """Every parameter and BN buffer at the start and end of every epoch."""

    def __init__(self) -> None:
        self.start: list[dict[str, torch.Tensor]] = []
        self.end: list[dict[str, torch.Tensor]] = []

    @staticmethod
    def _copy(trainer) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    def on_epoch_start(self, trainer) -> None:
        self.start.append(self._copy(trainer))

    def on_epoch_end(self, trainer) -> None:
        self.end.append(self._copy(trainer))


def _train_frozen(tmp_path: Path, pth: Path, *extra: str) -> Snapshots:
    snaps = Snapshots()
    overrides = [*TINY, f"model.from={pth}", "optimizer.weight_decay=0.1", *extra]
    trainlab.train(None, overrides, out=tmp_path / "run", callbacks=[snaps], progress=False)
    return snaps


BACKBONE = [f"{i}.{w}" for i in (1, 2, 5, 6) for w in ("weight", "bias")]


@pytest.mark.parametrize("optimizer", ["adamw", "momentum"])  # native and trainlab's own decay
def test_frozen_parameters_are_bitwise_unchanged_until_unfrozen(
    tmp_path: Path, pth: Path, optimizer: str
):
    snaps = _train_frozen(
        tmp_path, pth, f"optimizer.name={optimizer}", "model.freeze=2", "training.grad_clip=1.0"
    )
    for epoch in (0, 1):
        for name in BACKBONE:  # no update and no weight decay
            assert torch.equal(snaps.start[epoch][name], snaps.end[epoch][name]), (epoch, name)
        for name in HEAD:
            assert not torch.equal(snaps.start[epoch][name], snaps.end[epoch][name])
    for name in BACKBONE:  # epoch 2: everything trains
        assert not torch.equal(snaps.start[2][name], snaps.end[2][name]), name


def test_gradual_unfreezing_trains_the_last_blocks_first(tmp_path: Path, pth: Path):
    snaps = _train_frozen(tmp_path, pth, "model.freeze.unfreeze=[{epoch: 1, blocks: 2}]")
    changed = {n for n in BACKBONE if not torch.equal(snaps.start[1][n], snaps.end[1][n])}
    assert changed == {"5.weight", "5.bias", "6.weight", "6.bias"}  # the last two blocks


@pytest.mark.parametrize("bn_eval", [True, False])
def test_bn_eval_keeps_frozen_running_statistics(tmp_path: Path, pth: Path, bn_eval: bool):
    snaps = _train_frozen(tmp_path, pth, f"model.freeze={{bn_eval: {str(bn_eval).lower()}}}")
    for epoch in range(3):  # frozen throughout (freeze: {}); validated after every epoch
        for name in ("2.running_mean", "2.running_var", "6.running_mean"):
            same = torch.equal(snaps.start[epoch][name], snaps.end[epoch][name])
            assert same == bn_eval, (epoch, name)


def test_the_model_is_handed_back_with_its_flags(tmp_path: Path, pth: Path):
    model = torch.nn.Sequential(  # the same names as TINY's mlp: from loads into it
        torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
        torch.nn.Identity(), torch.nn.Linear(16, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
        torch.nn.Identity(), torch.nn.Linear(8, 10),
    )  # fmt: skip
    overrides = [*TINY, f"model.from={pth}", "model.freeze={}", "training.epochs=1"]
    trainlab.train(None, overrides, out=tmp_path / "run", model=model, progress=False)
    assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------------------------- lr scale


@pytest.mark.parametrize(("wd", "groups"), [(0.01, 4), (0.0, 2)])  # decay/no_decay x pre/new
def test_pretrained_groups_get_the_scaled_lr(pth: Path, wd: float, groups: int):
    recipe = resolve_recipe(
        None,
        [*TINY, f"model.from={pth}", "optimizer.pretrained_lr_scale=0.1",
         f"optimizer.weight_decay={wd}", "optimizer.lr=0.002"],
    )  # fmt: skip
    parts = build(recipe)
    assert len(parts.optimizer.param_groups) == groups
    names = {id(p): n for n, p in parts.model.named_parameters()}
    x, y = next(iter(parts.loader.epoch(0, 0)))
    Step.of(parts)(x, y, 0.002)
    seen = set()
    for group in parts.optimizer.param_groups:
        pretrained = {names[id(p)] in parts.pretrained for p in group["params"]}
        assert len(pretrained) == 1  # a group is all pretrained or all new
        expected = 0.002 * 0.1 if pretrained == {True} else 0.002
        assert group["lr"] == expected
        seen |= pretrained
    assert seen == {True, False}
    plain = build(resolve_recipe(None, [*TINY, f"model.from={pth}"]))
    assert Step.of(plain).lr_scales is None  # scale 1: set_lr as it always was
    assert all("lr_scale" not in g for g in plain.optimizer.param_groups)


# ---------------------------------------------------------------------------------- resume

RESUME = [*TINY, "training.epochs=4", "training.checkpoint_every_steps=3", "model.freeze=2"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, pth: Path) -> Path:
    run = tmp_path_factory.mktemp("full") / "run"
    trainlab.train(None, [*RESUME, f"model.from={pth}"], out=run, progress=False)
    return run


@pytest.mark.parametrize("crash", [{"epoch": 2}, {"step": 12}], ids=["at-unfreeze", "after"])
def test_resume_across_the_unfreeze_epoch_is_exact(
    tmp_path: Path, pth: Path, uninterrupted: Path, crash: dict
):
    recipe = resolve_recipe(None, [*RESUME, f"model.from={pth}"])
    run = tmp_path / "crashed"
    run.mkdir()
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    with pytest.raises(KeyboardInterrupt):
        Trainer(build(recipe), run, callbacks=[Crash(**crash)], progress=False).fit()
    trainlab.train(None, out=run, resume=True, progress=False)
    a, b = (load_file(r / "model.safetensors") for r in (uninterrupted, run))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------- the demo


def test_fine_tuning_mnist1d_5_to_9_from_0_to_4(tmp_path: Path, pretrained_run: Path):
    """The lecture's use: a network pretrained on digits 0-4 starts the task 5-9."""
    overrides = [
        *MNIST1D, "data.keep_classes=[5, 6, 7, 8, 9]", "training.epochs=4",
        f"model.from={pretrained_run}", "model.freeze=1", "optimizer.pretrained_lr_scale=0.3",
    ]  # fmt: skip
    with pytest.warns(
        TrainlabWarning, match=r"loaded 14 of 16 tensors.*new head.*: 9\.weight, 9\.bias"
    ):
        result = trainlab.train("mnist1d", overrides, out=tmp_path / "ft", progress=False)
    assert result.summary["test_acc"] > 0.28  # chance is 0.2
    predictor = trainlab.load_run(tmp_path / "ft")  # a plain run folder: its own weights
    assert predictor.classes == ["5", "6", "7", "8", "9"]
