"""``reduce_on_plateau``: torch's ReduceLROnPlateau rule (lecture 004: "divide by 10 when the
error plateaus") on the run's lr scale, checked against torch's own scheduler fed the same
validation sequence, in a real run, and exact under a stop and resume."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.optim import lr_scheduler

import trainlab
from tests.engine.engine_util import Crash, log_without_timing
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer
from trainlab.engine.plateau import ReduceOnPlateau
from trainlab.errors import RecipeError
from trainlab.optim.schedules import Plateau, ScaledLR, create_schedule

LR = 0.3


def _torch_lrs(values: list[float], lr: float = LR, **kwargs) -> list[float]:
    """The lr torch's ReduceLROnPlateau sets after each of ``values``."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for v in values:
        sched.step(v)
        out.append(opt.param_groups[0]["lr"])
    return out


def _ours(values: list[float], lr: float = LR, **kwargs) -> list[float]:
    rule = Plateau(**kwargs)
    out = []
    for v in values:
        rule.update(v, lr)
        out.append(lr * rule.scale)
    return out


def _sequences() -> list[list[float]]:
    """Validation curves with improvements, plateaus, exact ties and tiny (sub-threshold) gains."""
    rng = random.Random(0)
    walk, x = [], 1.0
    for _ in range(60):
        x += rng.choice([-0.05, -1e-6, 0.0, 0.0, 0.02])
        walk.append(round(x, 8))
    plateau = [1.0, 0.9, 0.8] + [0.8] * 12 + [0.7, 0.69999] + [0.7] * 10
    return [walk, plateau, [v * -1 + 2 for v in walk]]


@pytest.mark.parametrize(
    "mode, patience, threshold, threshold_mode, cooldown, min_lr",
    [
        ("min", 0, 1e-4, "rel", 0, 0.0),
        ("min", 2, 1e-4, "rel", 1, 0.0),
        ("min", 3, 0.01, "abs", 2, 1e-3),
        ("max", 1, 1e-4, "rel", 0, 0.0),
        ("max", 2, 0.02, "abs", 3, 5e-3),
        ("min", 10, 1e-4, "rel", 0, 0.0),  # torch's defaults
    ],
)
def test_the_rule_matches_torchs_reduce_lr_on_plateau(
    mode, patience, threshold, threshold_mode, cooldown, min_lr
):
    kwargs = dict(
        mode=mode,
        factor=0.1,
        patience=patience,
        threshold=threshold,
        threshold_mode=threshold_mode,
        cooldown=cooldown,
        min_lr=min_lr,
    )
    for values in _sequences():
        ref = _torch_lrs(values, **kwargs)
        ours = _ours(values, **kwargs)
        assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15)
    # with these curves every configuration reduces at least once (the test would be vacuous)
    assert any(_ours(v, **kwargs)[-1] < LR for v in _sequences())


def test_the_state_round_trips_mid_sequence():
    """Stopped after 9 validations and restored into a fresh rule, it goes on as if never."""
    values = _sequences()[1]
    whole, first = (
        Plateau(mode="min", patience=1, cooldown=2),
        Plateau(mode="min", patience=1, cooldown=2),
    )
    for v in values:
        whole.update(v, LR)
    for v in values[:9]:
        first.update(v, LR)
    second = Plateau(mode="min", patience=1, cooldown=2)
    second.load_state_dict(first.state_dict())
    for v in values[9:]:
        second.update(v, LR)
    assert second.state_dict() == whole.state_dict() and whole.scale < 1.0


def test_scale_one_leaves_every_lr_bit_for_bit():
    mult = create_schedule("cosine", {"final_lr": 0.0}, LR, 10, 5, 100)
    lr = ScaledLR(LR, mult)
    assert [lr(t) for t in range(100)] == [LR * mult(t) for t in range(100)]
    lr.scale = 0.1
    assert lr(50) == pytest.approx(0.1 * LR * mult(50))


def test_needs_a_validation_split():
    with pytest.raises(RecipeError, match=r"reduce_on_plateau.*data\.val_fraction is 0"):
        trainlab.resolve_recipe(None, ["schedule=reduce_on_plateau", "data.val_fraction=0"])
    with pytest.raises(RecipeError, match="schedule.metric"):
        trainlab.resolve_recipe(None, ["schedule={name: reduce_on_plateau, metric: val_top5}"])
    with pytest.raises(RecipeError, match="schedule.min_lr"):
        create_schedule("reduce_on_plateau", {"min_lr": 1.0}, 0.1, 10, 0, 100)


def test_min_or_max_follows_the_metric():
    loss = ReduceOnPlateau.from_params({"metric": "val_loss", "factor": 0.1, "patience": 0,
                                        "threshold": 0.0, "threshold_mode": "rel",
                                        "cooldown": 0, "min_lr": 0.0})  # fmt: skip
    acc = ReduceOnPlateau.from_params({"metric": "val_acc", "factor": 0.1, "patience": 0,
                                       "threshold": 0.0, "threshold_mode": "rel",
                                       "cooldown": 0, "min_lr": 0.0})  # fmt: skip
    assert loss.plateau.mode == "min" and acc.plateau.mode == "max"


# ---------------------------------------------------------------------------------------------
# in a run

PLATEAU = [
    "training.progress=false",
    "model.name=mlp",
    "model.widths=[64]",
    "augment=[{name: random_crop, padding: 1}]",
    "model.dropout=0.1",
    "training.epochs=5",
    "training.log_every=5",
    "training.checkpoint_every_steps=7",
    "optimizer.lr=0.003",
    # val_acc must gain 30% over its best to count: after the first validation none does, so
    # with patience 1 the lr is divided by 10 after validation 3 (the cooldown then skips 4)
    "schedule={name: reduce_on_plateau, metric: val_acc, patience: 1, threshold: 0.3, cooldown: 1}",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("plateau") / "run"
    trainlab.train(None, PLATEAU, out=run, progress=False)
    return run


def test_a_run_lowers_the_lr_as_torch_would_on_its_validation_curve(uninterrupted: Path):
    records = log_without_timing(uninterrupted)
    recipe = trainlab.resolve_recipe(None, PLATEAU)
    params = recipe.schedule.params()
    kwargs = {k: params[k] for k in ("patience", "threshold", "threshold_mode", "cooldown")}
    val = [r["val_acc"] for r in records if "val_acc" in r]
    after = _torch_lrs(val, lr=0.003, mode="max", factor=0.1, min_lr=0.0, **kwargs)
    assert len(val) == 5 and after[-1] < 0.003  # it did reduce
    spe = build(recipe).steps_per_epoch
    for r in records:
        if "lr" in r:  # the lr of a step of epoch e is what torch set after validation e - 1
            epoch = (r["step"] - 1) // spe
            expected = 0.003 if epoch == 0 else after[epoch - 1]
            assert r["lr"] == pytest.approx(expected, rel=1e-12), r


@pytest.mark.parametrize(
    "crash", [{"epoch": 3}, {"step": 63}], ids=["after-a-reduction", "mid-epoch-4"]
)
def test_stop_and_resume_is_exact(tmp_path: Path, uninterrupted: Path, crash: dict):
    recipe = trainlab.resolve_recipe(None, PLATEAU)
    run = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        Trainer(build(recipe), run, callbacks=[Crash(**crash)], progress=False).fit()
    trainlab.train(None, out=run, resume=True, progress=False)
    assert log_without_timing(run) == log_without_timing(uninterrupted)
    a, b = load_file(uninterrupted / "model.safetensors"), load_file(run / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_patience_grid_is_exercised():
    """Every (patience, cooldown) pair of small values agrees with torch on one hard curve."""
    values = _sequences()[0]
    for patience, cooldown in itertools.product(range(4), range(3)):
        kw = dict(mode="min", factor=0.1, patience=patience, cooldown=cooldown)
        assert _ours(values, **kw) == pytest.approx(_torch_lrs(values, **kw), rel=1e-12)
