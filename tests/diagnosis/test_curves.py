"""Check 6: synthetic curves built to show each pathology, and a real healthy run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import trainlab
import trainlab.diagnosis.curves
import trainlab.recipe
from trainlab.diagnosis.curves import check_curves, load_records, plot_curves, smooth

STEPS = np.arange(10, 1010, 10)  # 100 logged training records, 10 per epoch


def make(loss, acc, val_loss=None, val_acc=None, seed=0, noise=0.03) -> list[dict]:
    """Training records (loss with multiplicative noise) plus one val record per 100 steps."""
    rng = np.random.default_rng(seed)
    loss = np.asarray(loss, dtype=float) * (1 + noise * rng.standard_normal(len(STEPS)))
    records = []
    for i, s in enumerate(STEPS):
        records.append(
            {
                "step": int(s),
                "epoch": s / 100,
                "loss": float(loss[i]),
                "acc": float(acc[i]),
                "lr": 0.01,
            }
        )
        if val_loss is not None and s % 100 == 0:
            e = int(s // 100) - 1
            records.append(
                {
                    "step": int(s),
                    "epoch": e + 1,
                    "val_loss": float(val_loss[e]),
                    "val_acc": float(val_acc[e]),
                }
            )
    return records


def decay(start, end, rate=5.0, t=None):
    t = np.linspace(0, 1, len(STEPS)) if t is None else t
    return end + (start - end) * np.exp(-rate * t)


EPOCHS = np.linspace(0.1, 1, 10)


def statuses(findings) -> list[tuple[str, str]]:
    return [(f.status, f.summary.split(":")[0]) for f in findings]


def test_healthy_synthetic_is_ok():
    acc = 1 - decay(0.9, 0.02)
    f = check_curves(
        make(decay(2.3, 0.1), acc, decay(2.3, 0.15, t=EPOCHS), 1 - decay(0.9, 0.04, t=EPOCHS))
    )
    assert [x.status for x in f] == ["ok"], f


def test_exploding_loss_fails():
    loss = np.concatenate([decay(2.3, 0.5)[:60], 0.5 * np.exp(np.linspace(0, 5, 40))])
    f = check_curves(make(loss, np.full(100, 0.3)))
    assert statuses(f) == [("fail", "loss exploded")]
    assert f[0].values["peak_loss"] > 3 * f[0].values["start_loss"]


def test_nan_loss_fails_and_names_the_step():
    records = make(decay(2.3, 0.5), np.full(100, 0.5))
    records[70]["loss"] = math.nan
    f = check_curves(records)
    assert statuses(f) == [("fail", "loss exploded")]
    assert f[0].values["first_bad_step"] == records[70]["step"]


def test_plateau_then_drop_warns_bad_init():
    t = np.linspace(0, 1, 100)
    loss = np.where(t < 0.4, 2.3, 0.1 + 2.2 * np.exp(-8 * (t - 0.4)))
    f = check_curves(make(loss, np.where(t < 0.4, 0.1, 0.95)))
    assert ("warn", "loss plateau at the start") in statuses(f)
    assert 0.3 <= f[0].values["plateau_fraction"] <= 0.5
    assert "initialisation" in f[0].advice


def test_flat_loss_fails_lr_too_low():
    f = check_curves(make(np.full(100, 2.3), np.full(100, 0.1), seed=3))
    assert statuses(f) == [("fail", "loss is not going down")]
    assert "learning rate" in f[0].advice


def test_overfitting_warns_when_val_loss_rises():
    val_loss = np.array([1.5, 0.9, 0.6, 0.5, 0.52, 0.6, 0.7, 0.8, 0.9, 1.0])
    val_acc = np.array([0.6, 0.75, 0.82, 0.85, 0.85, 0.85, 0.84, 0.84, 0.84, 0.84])
    f = check_curves(make(decay(2.3, 0.02), 1 - decay(0.9, 0.0), val_loss, val_acc))
    assert statuses(f) == [("warn", "overfitting")]
    assert f[0].values["best_epoch"] == 4
    assert "regularise" in f[0].advice and "epoch 4" in f[0].advice


def test_underfitting_warns_when_train_and_val_both_poor():
    acc = 0.45 - decay(0.35, 0.0)
    val_loss = decay(2.3, 1.62, t=EPOCHS)
    f = check_curves(
        make(decay(2.3, 1.6), acc, val_loss, np.full(10, 0.44) - decay(0.3, 0, t=EPOCHS))
    )
    assert statuses(f) == [("warn", "underfitting")]
    assert "bigger model" in f[0].advice


def test_too_few_records_warns():
    assert check_curves([{"step": 1, "loss": 2.0}])[0].status == "warn"


def test_smooth_is_centred_and_keeps_length():
    x = np.arange(10.0)
    assert np.allclose(smooth(x, 3), [0.5, 1, 2, 3, 4, 5, 6, 7, 8, 8.5])
    assert len(smooth(np.ones(7))) == 7


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("curves") / "run"
    overrides = [
        "training.progress=false",
        "model.name=mlp",
        "model.widths=[64]",
        "augment=[]",
        "training.epochs=5",
    ]
    trainlab.train(None, overrides, out=out, progress=False)
    return out


def test_real_healthy_run_is_ok_and_plots(healthy_run: Path, tmp_path: Path):
    records = load_records(healthy_run / "metrics.jsonl")
    assert any("val_loss" in r for r in records)
    findings = check_curves(records, figure="curves.png")
    assert [f.status for f in findings] == ["ok"], [f.line() for f in findings]
    assert findings[0].figures == ("curves.png",)
    json.dumps([f.to_json() for f in findings])
    png = plot_curves(records, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plot_marks_nonfinite_losses(tmp_path: Path):
    records = make(decay(2.3, 0.5), np.full(100, 0.5))
    records[50]["loss"] = math.inf
    assert plot_curves(records, tmp_path / "c.png").stat().st_size > 10_000


def test_load_records_names_a_bad_line(tmp_path: Path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1, "loss": NaN}\n\nnot json\n')
    with pytest.raises(trainlab.errors.TrainlabError, match="metrics.jsonl:3"):
        load_records(p)
    p.write_text('{"step": 1, "loss": NaN}\n')
    assert math.isnan(load_records(tmp_path)[0]["loss"])


# ----------------------------------------------------------------------------------------------
# regularisers, labels, split size, the test split, fixes (issue 18)

DIGITS_VAL = [14] * 6 + [15] * 4  # the digits recipe's validation split: 144 over 10 classes


def recipe_of(*overrides: str):
    return trainlab.recipe.load_recipe(None, list(overrides))


def mnist1d():
    return trainlab.recipe.load_recipe("mnist1d")


def assert_fix_is_new(recipe, finding) -> None:
    """The fix resolves, and every key it names changes: no value the recipe already has."""
    assert finding.fix, finding
    changed = trainlab.recipe.recipe_differences(
        recipe.model_dump(mode="json"),
        trainlab.recipe.resolve_recipe(recipe, list(finding.fix)).model_dump(mode="json"),
    )
    for item in finding.fix:
        key = item.partition("=")[0]
        related = [
            k
            for k in changed  # model.init -> model.init.name; training.early_stopping <- .patience
            if k == key or key.startswith(k + ".") or k.startswith((key + ".", key + "["))
        ]
        assert related, (item, changed)


def test_loss_floor_is_the_entropy_of_the_targets():
    """Smoothing eps over C: the entropy of (1 - eps) y + eps/C; mixup with alpha 1 (lambda
    uniform, no smoothing): the labels differ with chance 1 - 1/C and E[H(lambda)] = 1/2."""
    eps, c = 0.05, 10
    top, rest = 1 - eps + eps / c, eps / c
    exact = -(top * math.log(top) + (c - 1) * rest * math.log(rest))
    smoothed = recipe_of("loss.label_smoothing=0.05", "data.num_classes=10")
    assert trainlab.diagnosis.curves.loss_floor(smoothed) == pytest.approx(exact, abs=1e-9)
    mixed = recipe_of("augment=[{name: mixup, alpha: 1.0}]", "loss.label_smoothing=0")
    floor = trainlab.diagnosis.curves.loss_floor(mixed, num_classes=10)
    assert floor == pytest.approx(0.9 * 0.5, abs=3e-3)
    assert trainlab.diagnosis.curves.loss_floor(recipe_of("loss.label_smoothing=0")) == 0.0
    flagship = trainlab.diagnosis.curves.loss_floor(mnist1d(), num_classes=10)
    assert exact < flagship < 0.6  # mixup alpha 0.2 on top of smoothing 0.05


def mixup_run(val_acc_end: float) -> list[dict]:
    """Training loss held at 60% of its start by mixup + smoothing (train accuracy on mixed
    batches 0.7); validation rising to ``val_acc_end``."""
    val_acc = val_acc_end - decay(0.6, 0.0, t=EPOCHS)
    val_loss = decay(2.3, 0.05 if val_acc_end > 0.9 else 1.5, t=EPOCHS)
    return make(decay(2.3, 0.6 * 2.3 / 1.0, rate=8), 0.7 - decay(0.6, 0), val_loss, val_acc)


def test_mixup_and_smoothing_at_99_percent_val_is_not_underfitting():
    records = mixup_run(0.99)
    for recipe in (mnist1d(), None):
        f = check_curves(records, recipe=recipe, val_counts=[40] * 10)
        assert [x.status for x in f] == ["ok"], [x.line() for x in f]
    f = check_curves(records, recipe=mnist1d(), val_counts=[40] * 10)
    assert f[0].values["loss_floor"] > 0.4 and f[0].values["end_loss"] > 0.55 * 2.3


def test_genuine_underfitting_under_mixup_warns_capacity_with_a_new_width():
    recipe = mnist1d()
    f = check_curves(mixup_run(0.5), recipe=recipe, val_counts=[40] * 10)
    assert statuses(f) == [("warn", "underfitting")]
    assert f[0].cause == "capacity" and f[0].fix == ("model.channels=[64, 128, 256]",)
    assert "mixup" in f[0].advice and "training.epochs=80" in f[0].advice
    assert_fix_is_new(recipe, f[0])


def labels_run(val_acc) -> list[dict]:
    """Training accuracy rising to 0.95 while the loss falls; validation as given."""
    return make(decay(2.3, 0.2), 0.95 - decay(0.85, 0), decay(2.3, 2.4, t=EPOCHS), val_acc)


def test_val_at_chance_while_train_rises_fails_data_labels():
    rng = np.random.default_rng(1)
    f = check_curves(labels_run(0.1 + 0.02 * rng.standard_normal(10)), val_counts=DIGITS_VAL)
    assert statuses(f) == [("fail", "labels do not match the inputs")]
    assert f[0].cause == "data.labels" and "--checks overfit" in f[0].advice
    assert f[0].values["chance"] == pytest.approx(15 / 144, abs=1e-6)


def test_val_following_train_is_not_a_label_problem():
    """The healthy twin: the same training curve, validation rising with it."""
    records = make(
        decay(2.3, 0.2),
        0.95 - decay(0.85, 0),
        decay(2.3, 0.25, t=EPOCHS),
        0.93 - decay(0.8, 0, t=EPOCHS),
    )
    f = check_curves(records, val_counts=DIGITS_VAL)
    assert [x.status for x in f] == ["ok"], [x.line() for x in f]


OVERFIT_VAL = (
    np.array([1.5, 0.9, 0.6, 0.5, 0.52, 0.6, 0.7, 0.8, 0.9, 1.0]),
    np.array([0.6, 0.75, 0.82, 0.85, 0.85, 0.85, 0.84, 0.84, 0.84, 0.84]),
)


def test_tiny_validation_split_says_so_and_judges_no_overfitting():
    records = make(decay(2.3, 0.02), 1 - decay(0.9, 0.0), *OVERFIT_VAL)
    recipe = recipe_of()
    f = check_curves(records, recipe=recipe, val_counts=[2] * 10)
    assert statuses(f) == [("warn", "validation split too small to judge over- or underfitting")]
    assert f[0].values["val_examples"] == 20 and "20 validation examples" in f[0].summary
    assert f[0].fix == ("data.val_fraction=0.25",) and f[0].cause == ""
    assert_fix_is_new(recipe, f[0])
    # the twin: the digits split (144 over 10) judges, and the same curves overfit
    f = check_curves(records, recipe=recipe, val_counts=DIGITS_VAL)
    assert statuses(f) == [("warn", "overfitting")]


def test_overfitting_fix_is_stronger_decay_and_early_stopping():
    recipe = mnist1d()
    f = check_curves(make(decay(2.3, 0.02), 1 - decay(0.9, 0.0), *OVERFIT_VAL), recipe=recipe)
    assert f[0].cause == "regularization"
    assert f[0].fix == ("optimizer.weight_decay=0.25", "training.early_stopping.patience=5")
    assert "model.dropout=0.2" in f[0].advice and "epoch 4" in f[0].advice
    assert_fix_is_new(recipe, f[0])
    stopping = recipe_of("training.early_stopping.patience=3", "optimizer.weight_decay=0")
    f = check_curves(make(decay(2.3, 0.02), 1 - decay(0.9, 0.0), *OVERFIT_VAL), recipe=stopping)
    assert f[0].fix == ("optimizer.weight_decay=0.05",)
    assert "early_stopping" not in f[0].advice


def test_train_test_gap_from_the_summary_is_overfitting():
    """Validation tracks train (no verdict from it); the test accuracy in summary.json is 0.25
    below the final train accuracy: the gap grew from about 0.02 at the first evaluation."""
    records = make(
        decay(2.3, 0.05),
        0.99 - decay(0.8, 0),
        decay(2.3, 0.1, t=EPOCHS),
        0.97 - decay(0.8, 0, t=EPOCHS),
    )
    f = check_curves(records, summary={"test_acc": 0.74, "test_loss": 0.9})
    assert statuses(f) == [("warn", "overfitting")]
    assert f[0].values["test_gap"] == pytest.approx(0.25, abs=0.02)
    healthy = check_curves(records, summary={"test_acc": 0.965, "test_loss": 0.12})
    assert [x.status for x in healthy] == ["ok"] and "test accuracy 0.965" in healthy[0].summary


def test_lr_fixes_come_from_the_recipe_and_name_real_commands():
    recipe = recipe_of()  # digits: lr 0.003, no clipping, a warm-up
    loss = np.concatenate([decay(2.3, 0.5)[:60], 0.5 * np.exp(np.linspace(0, 5, 40))])
    up = check_curves(make(loss, np.full(100, 0.3)), recipe=recipe)[0]
    assert (up.cause, up.fix) == ("lr.high", ("optimizer.lr=0.0003",))
    assert "training.grad_clip=1" in up.advice and "warmup" not in up.advice
    flat = check_curves(make(np.full(100, 2.3), np.full(100, 0.1), seed=3), recipe=recipe)[0]
    assert (flat.cause, flat.fix) == ("lr.low", ("optimizer.lr=0.03",))
    assert (
        "lr-find" not in flat.advice and "trainlab doctor RECIPE --checks lr_range" in flat.advice
    )
    for finding in (up, flat):
        assert_fix_is_new(recipe, finding)


def test_plateau_fix_names_the_fitting_init_only_when_the_recipe_lacks_it():
    t = np.linspace(0, 1, 100)
    records = make(
        np.where(t < 0.4, 2.3, 0.1 + 2.2 * np.exp(-8 * (t - 0.4))), np.where(t < 0.4, 0.1, 0.95)
    )
    normal = recipe_of("model.init=normal")
    f = check_curves(records, recipe=normal)[0]
    assert (f.cause, f.fix) == ("init.scale", ("model.init=kaiming_normal",))
    assert_fix_is_new(normal, f)
    assert check_curves(records, recipe=recipe_of())[0].fix == ()  # already kaiming_normal


def test_monitor_findings_are_named_under_curves(tmp_path: Path):
    saved = {
        "check": "layers.activations",
        "status": "warn",
        "summary": "s",
        "advice": "a",
        "values": {},
        "cause": "units.dead",
        "fix": [],
    }
    (tmp_path / "monitor.json").write_text(json.dumps({"steps": {}, "findings": [saved]}))
    [f] = trainlab.diagnosis.curves._monitor_findings(tmp_path)
    assert f.check == "curves.monitor.layers.activations" and f.name == "curves"
    assert f.cause == "units.dead"
