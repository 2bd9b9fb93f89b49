"""Check 6: synthetic curves built to show each pathology, and a real healthy run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import trainlab
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
