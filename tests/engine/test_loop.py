"""The training loop end to end on real (small) data, through the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import trainlab
from tests.engine.engine_util import (
    Crash,
    crash_then_resume,
    log_without_timing,
    train_uninterrupted,
)
from trainlab.engine.build import build
from trainlab.engine.callbacks import Callback
from trainlab.engine.loop import Trainer
from trainlab.engine.step import Step
from trainlab.recipe import load_recipe

FAST = ["training.progress=false"]


def _mlp_digits(*extra: str) -> list[str]:
    return [*FAST, "model.name=mlp", "model.widths=[64]", "augment=[]", "training.epochs=3", *extra]


def test_train_writes_a_complete_run_folder(tmp_path: Path):
    summary = trainlab.train(None, _mlp_digits(), out=tmp_path / "run", progress=False).summary
    run = tmp_path / "run"
    for name in ("recipe.yaml", "metrics.jsonl", "model.safetensors", "summary.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["epochs_run"] == 3 and summary["test_acc"] > 0.85
    assert {"test_loss", "test_top5", "best_epoch", "wall_s", "samples_per_s"} <= set(summary)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == sorted(set(train_steps))
    assert sum("val_acc" in r for r in records) == 3
    # the resolved recipe re-runs as is
    assert load_recipe(run / "recipe.yaml") == trainlab.resolve_recipe(None, _mlp_digits())
    again = trainlab.train(run / "recipe.yaml", out=tmp_path / "again", progress=False).summary
    assert again["test_loss"] == summary["test_loss"]  # same seed, same data order: same result


def test_seed_changes_the_trace_and_only_the_seed(tmp_path: Path):
    a = trainlab.train(None, _mlp_digits("seed=1"), out=tmp_path / "a", progress=False).summary
    b = trainlab.train(None, _mlp_digits("seed=2"), out=tmp_path / "b", progress=False).summary
    c = trainlab.train(None, _mlp_digits("seed=1"), out=tmp_path / "c", progress=False).summary
    assert a["test_loss"] == c["test_loss"]
    assert a["test_loss"] != b["test_loss"]


RESUME = [
    *FAST,
    "augment=[{name: random_crop, padding: 1}, mixup, cutmix]",
    "model.dropout=0.2",
    "training.epochs=4",
    "training.early_stopping={patience: 10}",
    "training.checkpoint_every_steps=7",
    "training.log_every=5",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    return train_uninterrupted(tmp_path_factory, RESUME)


@pytest.mark.parametrize(
    "crash",
    [{"epoch": 2}, {"step": 7}, {"step": 63}, {"step": 77}],
    ids=["epoch-end-after-validation", "mid-epoch", "mid-epoch-3", "last-checkpoint"],
)
def test_resume_after_a_crash_gives_identical_weights_and_log(
    tmp_path: Path, uninterrupted: Path, crash: dict
):
    run = tmp_path / "crashed"
    resumed = crash_then_resume(RESUME, run, Crash(**crash))

    a = load_file(uninterrupted / "model.safetensors")
    b = load_file(run / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    full = json.loads((uninterrupted / "summary.json").read_text())
    assert resumed["test_loss"] == full["test_loss"]
    assert resumed["best_epoch"] == full["best_epoch"]
    assert log_without_timing(run) == log_without_timing(uninterrupted)  # no gap, no duplicate


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path: Path):
    overrides = _mlp_digits(
        "training.epochs=40",
        "optimizer.lr=0.03",
        "training.early_stopping={metric: val_loss, patience: 2}",
    )
    run = tmp_path / "es"
    run.mkdir()
    recipe = trainlab.resolve_recipe(None, overrides)
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    trainer = Trainer(build(recipe), run, progress=False)
    summary = trainer.fit().summary
    assert summary["stop_reason"] and "early stopping" in summary["stop_reason"]
    assert summary["epochs_run"] < 40
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert summary["best_epoch"] == val.index(min(val)) + 1
    assert trainer.evaluate_split("val")["val_loss"] == min(val)  # the best weights are back
    best = (run / "checkpoints" / "best").read_text()  # "best" means the same thing everywhere
    assert best == f"best-step-{summary['best_epoch'] * trainer.steps_per_epoch:08d}"
    report = trainlab.evaluate(run, plot=False)
    assert report["test_loss"] == pytest.approx(summary["test_loss"])
    # resuming a run that stopped early only finishes it: no more training, same result
    again = trainlab.train(None, out=run, resume=True, progress=False).summary
    assert again["steps"] == summary["steps"] and again["test_loss"] == summary["test_loss"]


def test_resume_refuses_a_changed_recipe(tmp_path: Path):
    run = tmp_path / "r"
    trainlab.train(None, _mlp_digits("training.epochs=2"), out=run, progress=False)
    with pytest.raises(trainlab.RunFolderError, match=r"\(1 differing: training.epochs\)"):
        trainlab.train(None, _mlp_digits("training.epochs=3"), out=run, resume=True)


def test_resume_mid_epoch_on_the_dataloader_path_with_workers(tmp_path: Path):
    overrides = [
        *FAST,
        "data.loader=dataloader",
        "data.num_workers=2",
        "training.epochs=2",
        "model.name=mlp",
        "model.widths=[32]",
        "augment=[{name: hflip}, cutmix]",
        "training.checkpoint_every_steps=5",
    ]
    full = trainlab.train(None, overrides, out=tmp_path / "full", progress=False).summary
    recipe = trainlab.resolve_recipe(None, overrides)
    run = tmp_path / "crashed"
    run.mkdir()
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    with pytest.raises(KeyboardInterrupt):
        Trainer(build(recipe), run, callbacks=[Crash(step=25)], progress=False).fit()
    resumed = trainlab.train(None, out=run, resume=True, progress=False).summary
    assert resumed["test_loss"] == full["test_loss"]
    a, b = (load_file(r / "model.safetensors") for r in (tmp_path / "full", run))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_huge_seeds_work(tmp_path: Path):
    summary = trainlab.train(
        None,
        [*FAST, f"seed={2**62}", "training.max_steps=3", "schedule.warmup_epochs=0"],
        out=tmp_path / "s",
        progress=False,
    ).summary
    assert summary["steps"] == 3


def test_lbfgs_trains_full_batch_on_the_spiral(tmp_path: Path):
    overrides = [
        *FAST,
        "data.name=spiral",
        "model.name=mlp",
        "model.widths=[64, 64]",
        "model.activation=tanh",
        "model.init=xavier_normal",
        "model.norm=none",
        "augment=[]",
        "optimizer={name: lbfgs, lr: 1.0}",
        "schedule.warmup_epochs=0",
        "schedule.name=constant",
        "training.epochs=15",
        "preprocess.name=standardize",
    ]
    summary = trainlab.train(None, overrides, out=tmp_path / "lbfgs", progress=False).summary
    assert summary["steps"] == 15
    assert summary["test_acc"] > 0.9  # a linear model gets ~0.5 on the spiral


def test_binary_cross_entropy_uses_one_logit(tmp_path: Path, blobs_npz: Path):
    overrides = [
        *FAST,
        f"data={{name: npz, path: '{blobs_npz}'}}",
        "model.name=mlp",
        "model.widths=[16]",
        "augment=[]",
        "loss=bce",
        "preprocess.name=standardize",
        "schedule.warmup_epochs=0",
        "training.epochs=3",
        "optimizer.lr=0.03",
    ]
    trainer = Trainer(
        build(trainlab.resolve_recipe(None, overrides)), tmp_path / "bce", progress=False
    )
    assert list(trainer.model.parameters())[-1].shape == (1,)
    (tmp_path / "bce").mkdir()
    assert trainer.fit().test["test_acc"] > 0.95


@pytest.mark.parametrize(
    "l1, l2", [(0.0, 0.1), (0.01, 0.0), (0.01, 0.1)], ids=["l2", "l1", "elastic"]
)
def test_penalties_add_their_gradient_to_weights_only(tmp_path: Path, l1: float, l2: float):
    overrides = _mlp_digits(f"regularization.l2={l2}", f"regularization.l1={l1}")
    parts = build(trainlab.resolve_recipe(None, overrides))
    step = Step.of(parts)
    assert step.penalised
    parts.model.zero_grad()
    step.penalty().backward()
    for module in parts.model.modules():
        if isinstance(module, torch.nn.Linear):
            w = module.weight
            torch.testing.assert_close(w.grad, l1 * w.sign() + l2 * w)
            assert module.bias.grad is None  # biases are not penalised by default


def test_lr_scaling_rule_and_warmup(tmp_path: Path):
    overrides = _mlp_digits(
        "optimizer.lr=0.01",
        "optimizer.base_batch_size=32",
        "optimizer.lr_scaling=linear",
        "training.batch_size=128",
        "schedule={name: constant, warmup_epochs: 1}",
    )
    parts = build(trainlab.resolve_recipe(None, overrides))
    assert parts.base_lr == pytest.approx(0.04)
    warm = parts.steps_per_epoch
    assert parts.lr(0) == pytest.approx(0.04 / warm)
    assert parts.lr(warm - 1) == pytest.approx(0.04)
    assert parts.lr(warm + 3) == pytest.approx(0.04)


def test_the_dataloader_path_trains_like_the_device_path(tmp_path: Path):
    base = [*FAST, "training.epochs=3", "data.num_workers=0"]
    device = trainlab.train(
        None, [*base, "data.loader=device"], out=tmp_path / "d", progress=False
    ).summary
    workers = trainlab.train(
        None, [*base, "data.loader=dataloader"], out=tmp_path / "w", progress=False
    ).summary
    assert workers["steps"] == device["steps"]
    assert workers["test_acc"] > 0.85 and device["test_acc"] > 0.85
    same = [*base, "augment=[]"]  # without random transforms the two paths are the same maths
    a = trainlab.train(
        None, [*same, "data.loader=device"], out=tmp_path / "d2", progress=False
    ).summary
    b = trainlab.train(
        None, [*same, "data.loader=dataloader"], out=tmp_path / "w2", progress=False
    ).summary
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-6)


def test_an_existing_run_folder_is_never_overwritten(tmp_path: Path):
    run = tmp_path / "taken"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    with pytest.raises(trainlab.RunFolderError, match="already exists"):
        trainlab.train(None, _mlp_digits(), out=run, progress=False)
    assert [p.name for p in run.iterdir()] == ["keep.txt"]


class _GradNorms(Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_batch_end(self, trainer: Trainer) -> None:
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())


def test_gradient_clipping_bounds_the_global_norm(tmp_path: Path):
    recipe = trainlab.resolve_recipe(None, _mlp_digits("training.grad_clip=0.05"))
    probe = _GradNorms()
    (tmp_path / "clip").mkdir()
    Trainer(build(recipe), tmp_path / "clip", callbacks=[probe], progress=False).fit()
    assert probe.norms and max(probe.norms) <= 0.05 * (1 + 1e-4)


def test_bf16_autocast_trains(tmp_path: Path):
    summary = trainlab.train(
        None,
        _mlp_digits("training.precision=bf16", "training.epochs=4"),
        out=tmp_path / "bf16",
        progress=False,
    ).summary
    assert summary["test_acc"] > 0.85


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_with_data_resident_on_the_device(tmp_path: Path):
    recipe = trainlab.resolve_recipe(None, [*FAST, "training.device=cuda", "training.epochs=8"])
    trainer = Trainer(build(recipe), tmp_path / "cuda", progress=False)
    assert trainer.loader.x.is_cuda and next(trainer.model.parameters()).is_cuda
    (tmp_path / "cuda").mkdir()
    summary = trainer.fit().summary
    assert summary["device"].startswith("cuda") and summary["test_acc"] > 0.95


class _SeesSwitch(Callback):
    def on_fit_start(self, trainer: Trainer) -> None:
        self.deterministic = torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("caller", [False, True])
def test_deterministic_switch_is_the_runs_inside_fit_and_the_callers_after(
    tmp_path: Path, caller: bool
):
    """Inside fit() the recipe's switch holds (set both ways); build() and fit() leave the
    caller's as it was."""
    torch.use_deterministic_algorithms(caller)
    try:
        for name, value in (("d", "true"), ("n", "false")):
            recipe = trainlab.resolve_recipe(
                None, _mlp_digits(f"training.deterministic={value}", "training.epochs=2")
            )
            parts = build(recipe)
            assert torch.are_deterministic_algorithms_enabled() is caller
            seen = _SeesSwitch()
            Trainer(parts, tmp_path / f"{name}{caller}", [seen], progress=False).fit()
            assert seen.deterministic is (value == "true")
            assert torch.are_deterministic_algorithms_enabled() is caller
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.name=tv.resnet18"], "a forward pass on examples of shape (1, 8, 8) failed"),
        (["model.name=tv.resnet18", "model.dropout=0.1"], "model.dropout applies to"),
        (["evaluation.topk=10"], "evaluation.topk=10 must be below the number of classes"),
        (["schedule={name: cosine, final_lr: 1.0}"], "schedule.final_lr=1.0 is above"),
    ],
)
def test_problems_found_before_the_run_folder_exists(tmp_path: Path, overrides, message):
    with pytest.raises(trainlab.RecipeError) as info:
        trainlab.train(None, [*FAST, *overrides], out=tmp_path / "r", progress=False)
    assert message in str(info.value)
    assert not (tmp_path / "r").exists()


def test_max_steps_sets_the_length_of_training(tmp_path: Path):
    summary = trainlab.train(
        None,
        _mlp_digits("training.epochs=1", "training.max_steps=50", "schedule.warmup_epochs=0"),
        out=tmp_path / "m",
        progress=False,
    ).summary
    assert summary["steps"] == 50 and summary["epochs_run"] == 3  # 20 steps per epoch


def test_lsuv_init_gets_preprocessed_training_inputs(tmp_path: Path):
    recipe = trainlab.resolve_recipe(
        None, _mlp_digits("model.init=lsuv", "model.widths=[64, 64]", "model.norm=none")
    )
    trainer = Trainer(build(recipe), tmp_path / "lsuv", progress=False)
    x = trainer.preprocess(trainer.parts.raw_sample[:256])
    stds = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: stds.append(o.std().item()))
        for m in trainer.model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    trainer.model.eval()
    with torch.no_grad():
        trainer.model(x)
    for h in hooks:
        h.remove()
    assert len(stds) == 3 and all(abs(s - 1) < 0.1 for s in stds), stds
