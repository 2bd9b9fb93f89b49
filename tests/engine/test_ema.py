"""EMA of the weights (``training.ema``): the formula, batch-norm buffers, resume, run folders."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import trainlab
from tests.engine.engine_util import Crash, crash_then_resume, train_uninterrupted
from trainlab.engine import checkpoint as ckpt
from trainlab.engine.build import build
from trainlab.engine.callbacks import Callback
from trainlab.engine.ema import EMA, ema_decay
from trainlab.engine.loop import Trainer
from trainlab.errors import RecipeError, RunFolderError

FAST = ["training.progress=false"]


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()


def _set_random(model: nn.Module, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Give every floating-point tensor of the state (in place: the live tensors stay the
    same objects) a new random value, bump num_batches_tracked; return the new state."""
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype))
            else:
                tensor.add_(1)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _closed_form(states: list[dict], decays: list[float]) -> dict[str, torch.Tensor]:
    """``prod_j d_j * w_0 + sum_i (1 - d_i) prod_{j > i} d_j * w_i``: the unrolled average of
    ``states[0]`` (the start) and the updates ``states[1:]`` with their decays."""
    k = len(decays)
    out = {}
    for name, w0 in states[0].items():
        if not w0.is_floating_point():
            continue
        total = w0 * torch.tensor(decays, dtype=torch.float64).prod()
        for i in range(1, k + 1):
            later = torch.tensor(decays[i:], dtype=torch.float64).prod()
            total = total + (1 - decays[i - 1]) * later * states[i][name]
        out[name] = total
    return out


def test_warmup_decay_is_timms():
    assert ema_decay(0.999, 0, True) == pytest.approx(0.1)
    assert ema_decay(0.999, 10, True) == pytest.approx(11 / 20)
    assert ema_decay(0.9, 10_000, True) == 0.9
    assert ema_decay(0.999, 0, False) == 0.999


@pytest.mark.parametrize("warmup", [False, True], ids=["fixed", "warmup"])
@pytest.mark.parametrize("every", [1, 2])
def test_average_is_the_closed_form(warmup: bool, every: int):
    model, gen = _toy(), torch.Generator().manual_seed(1)
    ema = EMA(0.8, every=every, warmup=warmup)
    ema.bind(model)
    states = [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    for step in range(1, 8):
        state = _set_random(model, gen)
        ema.on_batch_end(SimpleNamespace(step=step))
        if step % every == 0:
            states.append(state)
    decays = [ema_decay(0.8, n, warmup) for n in range(len(states) - 1)]
    assert ema.updates == 7 // every
    expected, got = _closed_form(states, decays), ema.averaged_state()
    assert got.keys() == expected.keys()  # weights and the float BN buffers, not the counter
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12)


def test_average_matches_torch_swa_utils_ema():
    """PyTorch's own EMA (AveragedModel + get_ema_multi_avg_fn, buffers averaged) started from
    the same weights: the same parameters and float buffers."""
    model, gen = _toy(), torch.Generator().manual_seed(2)
    ema = EMA(0.9, warmup=False)
    ema.bind(model)
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    reference.update_parameters(model)  # its first call copies: the same start as ours
    for step in range(1, 6):
        _set_random(model, gen)
        ema.on_batch_end(SimpleNamespace(step=step))
        reference.update_parameters(model)
    ours = ema.averaged_state()
    for name, tensor in reference.module.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(ours[name], tensor, rtol=1e-12, atol=1e-12)


def test_batch_norm_statistics_are_averaged_and_the_counter_is_the_live_one():
    model = _toy().train()
    bn = model[1]
    ema = EMA(0.5, warmup=False)
    ema.bind(model)
    means = [bn.running_mean.clone()]
    gen = torch.Generator().manual_seed(3)
    for step in range(1, 5):  # real forward passes move the running statistics
        model(torch.randn(16, 3, generator=gen, dtype=torch.float64) + step)
        means.append(bn.running_mean.clone())
        ema.on_batch_end(SimpleNamespace(step=step))
    expected = _closed_form([{"m": m} for m in means], [0.5] * 4)["m"]
    live_mean, live_count = bn.running_mean.clone(), bn.num_batches_tracked.clone()
    weight = bn.weight
    with ema.swapped():
        torch.testing.assert_close(bn.running_mean, expected, rtol=1e-12, atol=1e-12)
        assert torch.equal(bn.num_batches_tracked, live_count)  # copied, never averaged
        assert int(bn.num_batches_tracked) == 4
    assert torch.equal(bn.running_mean, live_mean)  # swapped back
    assert bn.weight is weight  # the same Parameter object: the optimiser still holds it


def test_swapped_puts_the_live_weights_back_when_the_block_raises():
    model = _toy()
    ema = EMA(0.5, warmup=False)
    ema.bind(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _set_random(model, torch.Generator().manual_seed(4))
    ema.on_batch_end(SimpleNamespace(step=1))
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ZeroDivisionError), ema.swapped():
        averaged = model.state_dict()
        torch.testing.assert_close(
            averaged["0.weight"], (before["0.weight"] + live["0.weight"]) / 2
        )
        _ = 1 / 0
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, live[name]), name


def test_state_round_trips_before_and_during_a_run():
    model, gen = _toy(), torch.Generator().manual_seed(5)
    ema = EMA(0.7)
    ema.bind(model)
    for step in range(1, 4):
        _set_random(model, gen)
        ema.on_batch_end(SimpleNamespace(step=step))
    state = ema.state_dict()
    assert all(t.device.type == "cpu" for t in state["tensors"].values())
    fresh = EMA(0.7)
    fresh.load_state_dict(state)  # a resume: loaded before the fit binds the model
    fresh.bind(model)
    assert fresh.updates == 3
    for name, tensor in ema.averaged_state().items():
        assert torch.equal(fresh.averaged_state()[name], tensor), name
    state["tensors"]["0.weight"].add_(1)  # state_dict() copies: the average is untouched
    assert not torch.equal(ema.averaged_state()["0.weight"], state["tensors"]["0.weight"])
    fresh.load_state_dict(state)  # a rollback: copied in at once
    assert torch.equal(fresh.averaged_state()["0.weight"], state["tensors"]["0.weight"])
    with pytest.raises(RunFolderError, match="EMA state does not fit"):
        fresh.load_state_dict({"updates": 1, "tensors": {"other.weight": torch.zeros(1)}})


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("training.ema={decay: 1.5}", "training.ema.decay"),
        ("training.ema={decay: 0}", "training.ema.decay"),
        ("training.ema={every: 0}", "training.ema.every"),
        ("training.ema={decya: 0.9}", "training.ema"),
    ],
)
def test_bad_ema_settings_are_one_line_naming_the_key(override: str, key: str):
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")) as info:
        trainlab.resolve_recipe(None, [override])
    assert "\n" not in str(info.value)


def test_ema_is_off_by_default_and_refused_with_full_batch_steps():
    recipe = trainlab.resolve_recipe(None, [])
    assert recipe.training.ema is None
    on = trainlab.resolve_recipe(None, ["training.ema={}"]).training.ema
    assert (on.decay, on.every, on.warmup) == (0.999, 1, True)
    assert trainlab.resolve_recipe(None, ["training.ema=true"]).training.ema == on
    assert trainlab.resolve_recipe(None, ["training.ema=false"]).training.ema is None
    with pytest.raises(RecipeError, match="training.ema: lbfgs"):
        trainlab.resolve_recipe(None, ["optimizer=lbfgs", "training.ema={}"])


# ----------------------------------------------------------------------------------------------
# runs

SMALL = [
    *FAST,
    "model.channels=[8]",
    "model.depth=1",
    "augment=[]",
    "training.epochs=3",
    "training.log_every=5",
]
EMA_ON = "training.ema={decay: 0.9, every: 2}"


class Recorder(Callback):
    """The live weights after every step (the EMA's on_batch_end has run before: it is in
    the standard callbacks, ahead of a caller's)."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        self.states[trainer.step] = _copy(trainer.model)

    def on_batch_end(self, trainer: Trainer) -> None:
        self.states[trainer.step] = _copy(trainer.model)


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _replayed(states: dict[int, dict], upto: int, decay: float, every: int) -> dict:
    """The EMA recomputed from the recorded live weights, with the same lerp (float32)."""
    avg = {k: v.clone() for k, v in states[0].items() if v.is_floating_point()}
    for n, step in enumerate(range(every, upto + 1, every)):
        d = ema_decay(decay, n, True)
        for k in avg:
            avg[k].lerp_(states[step][k], 1 - d)
    return avg


def test_a_run_evaluates_checkpoints_and_saves_the_average(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    recipe = trainlab.resolve_recipe(None, [*SMALL, EMA_ON])
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    recorder = Recorder()
    trainer = Trainer(build(recipe), run, callbacks=[recorder], progress=False)
    summary = trainer.fit().summary
    steps = summary["steps"]
    saved = load_file(run / "model.safetensors")
    ema = _replayed(recorder.states, steps, 0.9, 2)
    for name, tensor in ema.items():
        torch.testing.assert_close(saved[f"model.{name}"], tensor, rtol=1e-6, atol=1e-7)
    live = recorder.states[steps]  # not the live weights, and the counter is the live one
    first = next(k for k in live if k.endswith("weight"))
    assert not torch.equal(saved[f"model.{first}"], live[first])
    counters = [k for k in live if k.endswith("num_batches_tracked")]
    assert counters and all(torch.equal(saved[f"model.{k}"], live[k]) for k in counters)
    # the best checkpoint holds the average at its step; validation judged those weights
    weights, state = ckpt.load_checkpoint(run / "checkpoints", "best")
    best_ema = _replayed(recorder.states, state["step"], 0.9, 2)
    for name, tensor in best_ema.items():
        torch.testing.assert_close(weights[f"model.{name}"], tensor, rtol=1e-6, atol=1e-7)
    # the last checkpoint keeps the live weights (training resumes from them) and the average
    weights, state = ckpt.load_checkpoint(run / "checkpoints", "last")
    assert torch.equal(weights[f"model.{first}"], live[first])
    assert state["callbacks"]["ema"]["updates"] == steps // 2
    for name, tensor in state["callbacks"]["ema"]["tensors"].items():
        assert torch.equal(tensor, saved[f"model.{name}"]), name
    # the test figures are the average's; the live weights' are beside them under "raw"
    report = trainlab.evaluate(run, plot=False)
    assert report["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert set(summary["raw"]) == {k for k in summary if k.startswith("test_")}
    assert summary["raw"]["test_loss"] != summary["test_loss"]
    assert json.loads((run / "summary.json").read_text())["raw"] == summary["raw"]


def test_without_ema_nothing_changes(tmp_path: Path):
    trainer = Trainer(build(trainlab.resolve_recipe(None, SMALL)), tmp_path / "r", progress=False)
    assert trainer.ema is None
    assert not any(isinstance(cb, EMA) for cb in trainer.callbacks.callbacks)
    with trainer.averaged():
        pass
    summary = trainer.fit().summary
    assert "raw" not in summary


RESUME = [*SMALL, EMA_ON, "training.checkpoint_every_steps=7"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    return train_uninterrupted(tmp_path_factory, RESUME)


@pytest.mark.parametrize(
    "crash", [{"step": 7}, {"step": 28}, {"epoch": 2}], ids=["odd-step", "even-step", "epoch-end"]
)
def test_resume_after_a_crash_gives_bit_identical_averages(
    tmp_path: Path, uninterrupted: Path, crash: dict
):
    run = tmp_path / "crashed"
    resumed = crash_then_resume(RESUME, run, Crash(**crash))
    a, b = (load_file(r / "model.safetensors") for r in (uninterrupted, run))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema_a, ema_b = (
        ckpt.load_checkpoint(r / "checkpoints", "last")[1]["callbacks"]["ema"]
        for r in (uninterrupted, run)
    )
    assert ema_a["updates"] == ema_b["updates"]
    assert all(torch.equal(ema_a["tensors"][k], ema_b["tensors"][k]) for k in ema_a["tensors"])
    full = json.loads((uninterrupted / "summary.json").read_text())
    assert (resumed["test_loss"], resumed["raw"]) == (full["test_loss"], full["raw"])
    assert resumed["best_epoch"] == full["best_epoch"]


def test_early_stopping_restores_the_best_average(tmp_path: Path):
    """Early stopping judges the average and restores the best epoch's average, not the
    final one (early stopping's restore comes after the EMA's delivery at the end)."""
    overrides = [
        *SMALL,
        EMA_ON,
        "training.epochs=30",
        "optimizer.lr=0.03",
        "training.early_stopping={metric: val_acc, patience: 3}",
    ]
    run = tmp_path / "es"
    summary = trainlab.train(None, overrides, out=run, progress=False).summary
    assert summary["best_epoch"] < summary["epochs_run"]  # so restoring the best matters
    weights, _ = ckpt.load_checkpoint(run / "checkpoints", "best")
    saved = load_file(run / "model.safetensors")
    assert all(torch.equal(saved[k], weights[k]) for k in saved)
    final = ckpt.load_checkpoint(run / "checkpoints", "last")[1]["callbacks"]["ema"]["tensors"]
    assert any(not torch.equal(saved[f"model.{k}"], v) for k, v in final.items())
