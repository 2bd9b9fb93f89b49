"""``training.monitor_every``: the doctor's per-layer checks during training, read-only and exact
under resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import trainlab
from tests.engine.engine_util import Crash
from trainlab.diagnosis.monitor import LayerMonitor
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer
from trainlab.errors import TrainlabWarning

MLP = [
    "training.progress=false",
    "model.name=mlp",
    "model.widths=[64, 64]",
    "augment=[]",
    "training.epochs=3",
]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "layers.jsonl").read_text().splitlines()]


def test_monitoring_records_every_n_steps_and_changes_nothing(tmp_path: Path):
    plain = trainlab.train(None, MLP, out=tmp_path / "plain", progress=False).summary
    watched = trainlab.train(None, [*MLP, "training.monitor_every=10"], out=tmp_path / "m").summary
    assert watched["test_loss"] == plain["test_loss"]
    a, b = (load_file(tmp_path / r / "model.safetensors") for r in ("plain", "m"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit: the monitor only reads
    records = _records(tmp_path / "m")
    steps = watched["steps"]
    assert [r["step"] for r in records] == [1, *range(10, steps + 1, 10)]
    first = records[0]
    assert [a["kind"] for a in first["activations"]] == ["ReLU", "ReLU"]
    assert [a["name"] for a in first["activations"]] == ["3 ReLU", "7 ReLU"]  # as the doctor
    assert [g["name"] for g in first["gradients"]] == [
        "1 Linear(64->64)", "5 Linear(64->64)", "9 Linear(64->10)"
    ]  # fmt: skip
    assert all(g["grad_norm"] > 0 for g in first["gradients"])
    assert all(1e-5 < g["update_ratio"] < 1e-1 for g in first["gradients"])
    verdict = json.loads((tmp_path / "m" / "monitor.json").read_text())
    checks = ["layers.activations", "layers.gradients", "layers.updates", "layers.symmetry"]
    assert [f["check"] for f in verdict["findings"]] == checks
    assert [f["status"] for f in verdict["findings"]] == ["ok"] * 4


def test_a_saturating_network_is_reported_at_the_end(tmp_path: Path):
    overrides = [
        *MLP,
        "model.norm=none",
        "model.activation=sigmoid",
        "model.init={name: normal, std: 1.0}",
    ]
    with pytest.warns(
        TrainlabWarning, match="monitor: (warn|fail) layers.activations: .*saturated"
    ):
        trainlab.train(None, [*overrides, "training.monitor_every=20"], out=tmp_path / "s")


def test_an_all_zero_init_is_reported_as_symmetric_units_not_a_learning_rate(tmp_path: Path):
    overrides = [*MLP, "model.init=zeros", "schedule.warmup_epochs=0", "training.monitor_every=10"]
    with pytest.warns(TrainlabWarning, match="monitor: fail layers.symmetry: .*identical units"):
        trainlab.train(None, overrides, out=tmp_path / "z")
    verdict = json.loads((tmp_path / "z" / "monitor.json").read_text())
    symmetry, *others = sorted(verdict["findings"], key=lambda f: f["check"] != "layers.symmetry")
    assert symmetry["cause"] == "init.symmetric" and symmetry["fix"] == [
        "model.init=kaiming_normal"
    ]
    for finding in others:  # nothing blames the learning rate: all follow from the symmetry
        assert finding["status"] == "ok" or finding["values"]["explained_by"] == "layers.symmetry"


@pytest.mark.parametrize(
    "every, crash", [(7, 23), (5, 17)], ids=["between-records", "on-a-record-mid-epoch"]
)
def test_the_layer_log_resumes_without_gap_or_duplicate(tmp_path: Path, every: int, crash: int):
    overrides = [*MLP, "training.monitor_every=5", f"training.checkpoint_every_steps={every}"]
    trainlab.train(None, overrides, out=tmp_path / "full", progress=False)
    recipe = trainlab.resolve_recipe(None, overrides)
    run = tmp_path / "crashed"
    run.mkdir()
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    with pytest.raises(KeyboardInterrupt):
        monitor = LayerMonitor(run / "layers.jsonl", 5)  # trainlab.train adds it itself
        Trainer(build(recipe), run, [monitor, Crash(step=crash)], progress=False).fit()
    trainlab.train(None, out=run, resume=True, progress=False)
    assert _records(run) == _records(tmp_path / "full")


def test_a_rollback_leaves_no_stale_hooks_and_the_run_finishes(tmp_path: Path):
    from tests.engine.test_nonfinite import BASE, _PoisonNextBatch

    recipe = trainlab.resolve_recipe(
        None,
        [
            *BASE,
            "training.nonfinite=rollback",
            "training.epochs=2",
            "schedule.warmup_epochs=0",
            "training.monitor_every=4",
        ],
    )
    run = tmp_path / "rollback"
    run.mkdir()
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    monitor = LayerMonitor(run / "layers.jsonl", 4)
    trainer = Trainer(build(recipe), run, [monitor, _PoisonNextBatch(at=3)], progress=False)
    with pytest.warns(TrainlabWarning, match="rolled back"):
        trainer.fit()
    hooks = sum(len(m._forward_hooks) for m in trainer.model.modules())
    assert hooks == 0
    steps = [r["step"] for r in _records(run)]
    assert steps == sorted(set(steps)) and steps[-1] == trainer.step


def test_validation_passes_are_not_counted_as_layers(tmp_path: Path):
    trainlab.train(None, [*MLP, "training.monitor_every=1"], out=tmp_path / "m", progress=False)
    assert {len(r["activations"]) for r in _records(tmp_path / "m")} == {2}  # 2 ReLUs, always


def test_full_batch_optimisers_refuse_the_monitor(tmp_path: Path):
    with pytest.raises(trainlab.RecipeError, match="training.monitor_every: lbfgs"):
        trainlab.train(
            None,
            [*MLP, "optimizer={name: lbfgs, lr: 1}", "training.monitor_every=1"],
            out=tmp_path / "l",
        )
