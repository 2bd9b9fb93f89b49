"""Test-time augmentation (``trainlab evaluate/predict --tta``): each policy's views are the
ones the literature names, identity is exactly plain evaluation, and bad choices fail in one
line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import trainlab
from tests.conftest import last_json
from trainlab.data.augment.signal import Shift
from trainlab.data.datasets import load_splits
from trainlab.engine.calibration import probabilities
from trainlab.engine.seeding import preserved_global_state
from trainlab.errors import TrainlabError
from trainlab.evaluation.tta import average_batch, averaged_probabilities, tta_levels
from trainlab.evaluation.tta_views import (
    POLICIES,
    TTAPolicy,
    ViewParams,
    resolve_policies,
    shift,
    ten_crops,
)
from trainlab.nn.regularizers import FractionalMaxPool


def _test_split(run: Path, n: int | None = None):
    predictor = trainlab.load_run(run)
    splits = load_splits(predictor.recipe.data)
    return predictor, splits.x_test[:n], splits.y_test[:n]


def test_ten_crops_are_the_corners_the_centre_and_their_flips():
    x = torch.randn(2, 3, 6, 7)
    p = torch.nn.functional.pad(x, [1, 1, 1, 1])  # 8 x 9: the crops are 6 x 7
    tl, tr, bl, br = p[..., :6, :7], p[..., :6, 2:], p[..., 2:, :7], p[..., 2:, 2:]
    centre = p[..., 1:7, 1:8]
    assert torch.equal(centre, x)
    crops = ten_crops(x, pad=1)
    # torchvision's order: the five crops, then the five of the flipped image, whose top-left
    # corner is the flip of the top-right one
    expected = [tl, tr, bl, br, centre, *(c.flip(-1) for c in (tr, tl, br, bl, centre))]
    assert len(crops) == 10
    for got, want in zip(crops, expected, strict=True):
        assert torch.equal(got, want)
    views = list(POLICIES["crops"].views(x, ViewParams(pad=1)))
    assert [w for w, _ in views] == [0.1] * 10 and POLICIES["crops"].count == 10
    assert all(torch.equal(v, c) for (_, v), c in zip(views, crops, strict=True))
    five = list(POLICIES["five_crops"].views(x, ViewParams(pad=1)))
    assert [w for w, _ in five] == [0.2] * 5
    assert all(torch.equal(v, c) for (_, v), c in zip(five, expected[:5], strict=True))


def test_multiscale_is_the_ten_crops_at_each_scale():
    from trainlab.evaluation.tta_views import SCALES

    x = torch.rand(2, 1, 8, 8)
    views = list(POLICIES["multiscale"].views(x, ViewParams(pad=1)))
    assert len(views) == 10 * len(SCALES) == POLICIES["multiscale"].count
    assert all(v.shape == x.shape for _, v in views)
    assert sum(w for w, _ in views) == pytest.approx(1.0)
    first = [v for _, v in views[:10]]  # scale 1: the plain 10 crops
    assert all(torch.equal(a, b) for a, b in zip(first, ten_crops(x, 1), strict=True))
    assert not torch.equal(views[14][1], x)  # the centre crop of the 1.25x image is not x


def test_translate_is_airbench_two_one_pixel_translations():
    x = torch.rand(3, 2, 5, 6)
    (w0, v0), (w1, v1), (w2, v2) = POLICIES["translate"].views(x, ViewParams(pad=1))
    assert (w0, w1, w2) == (0.5, 0.25, 0.25) and torch.equal(v0, x)
    assert torch.equal(v1[..., 1:, 1:], x[..., :-1, :-1])  # moved down-right by one
    assert torch.equal(v2[..., :-1, :-1], x[..., 1:, 1:])  # moved up-left by one
    flipped = list(POLICIES["flip_translate"].views(x, ViewParams(pad=1)))
    assert len(flipped) == 6 and torch.equal(flipped[1][1], x.flip(-1))


@pytest.mark.parametrize("mode", ["circular", "zeros"])
def test_shifts_are_the_shift_augmentations_translations(mode: str):
    x = torch.randn(4, 1, 40)
    views = list(POLICIES["shifts"].views(x, ViewParams(shift_mode=mode)))
    assert len(views) == 5 and torch.equal(views[2][1], x)
    reference = Shift(2, mode)  # out[t] = x[t - k], as training shifts
    for (weight, view), k in zip(views, range(-2, 3), strict=True):
        assert weight == pytest.approx(0.2)
        assert torch.equal(view, reference.apply(x, torch.full((4,), k)))
    assert torch.equal(shift(x, 2, "zeros")[..., :2], torch.zeros(4, 1, 2))
    assert torch.equal(shift(x, 2, "circular")[..., :2], x[..., -2:])


def test_view_parameters_follow_the_recipe(digits_dropout_run: Path, mnist1d_fmp_run: Path):
    digits = trainlab.load_run(digits_dropout_run).recipe
    assert ViewParams.from_recipe(digits) == ViewParams(pad=1, shift_mode="circular")
    mnist1d = trainlab.load_run(mnist1d_fmp_run).recipe
    assert ViewParams.from_recipe(mnist1d).shift_mode == "circular"


def test_identity_is_exactly_plain_evaluation(digits_dropout_run: Path):
    predictor, x, y = _test_split(digits_dropout_run)
    plain, _ = predictor.evaluate(x, y)
    levels = tta_levels(predictor, x, y, "identity")["levels"]
    assert list(levels) == ["identity"]
    for key in ("test_acc", "test_nll", "test_ece", "test_brier"):
        assert levels["identity"][key] == plain[key], key
    assert torch.equal(averaged_probabilities(predictor, x).probs, predictor.predict_proba(x))


def test_evaluate_reports_each_level_and_its_gain(digits_dropout_run: Path):
    plain = trainlab.evaluate(digits_dropout_run, plot=False)
    result = trainlab.evaluate(digits_dropout_run, plot=False, tta="flip,crops")
    tta = result.pop("tta")
    assert result == plain  # the plain figures are untouched
    assert list(tta["levels"]) == ["identity", "flip", "crops"]
    assert tta["levels"]["identity"]["test_acc"] == plain["test_acc"]
    assert tta["levels"]["crops"]["views"] == 10
    for name in ("flip", "crops"):
        gain = tta["levels"][name]["test_acc"] - plain["test_acc"]
        assert tta["gains"][name]["test_acc"] == pytest.approx(gain)
    assert tta["lines"][1].startswith(f"crops: test_acc {plain['test_acc']:.4f} -> ")


def test_flip_changes_nothing_for_a_mirror_symmetric_batch(digits_dropout_run: Path):
    predictor, x, _ = _test_split(digits_dropout_run, 40)
    symmetric = np.concatenate([x[..., :4], x[..., :4][..., ::-1]], axis=-1)
    plain = predictor.predict_proba(symmetric)
    assert torch.equal(averaged_probabilities(predictor, symmetric, "flip").probs, plain)
    # and it does change the probabilities of the digits as they are
    assert not torch.equal(
        averaged_probabilities(predictor, x, "flip").probs, predictor.predict_proba(x)
    )


def test_fractional_pooling_draws_differ_and_one_draw_is_one_stochastic_pass(
    mnist1d_fmp_run: Path,
):
    predictor, x, _ = _test_split(mnist1d_fmp_run, 64)
    raw = predictor.inputs(x)
    pools = [m for m in predictor.model.modules() if isinstance(m, FractionalMaxPool)]
    assert pools
    one = TTAPolicy("fmp1", POLICIES["fmp"].kinds, POLICIES["fmp"].views, 1, "", pool_draws=1)
    before = torch.get_rng_state()
    averaged = average_batch(predictor, raw, one, ViewParams(), seed=7).probs
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left alone
    with preserved_global_state(), torch.no_grad():
        torch.manual_seed(7)
        for m in pools:
            m.train()
        first = probabilities(predictor.model(predictor.preprocess(raw)))
        second = probabilities(predictor.model(predictor.preprocess(raw)))
        for m in pools:
            m.eval()
    assert torch.equal(averaged, first)
    assert not torch.equal(first, second)  # each draw pools different regions
    assert not predictor.model.training and not any(m.training for m in pools)
    twelve = averaged_probabilities(predictor, x, "fmp").probs
    assert torch.equal(twelve, averaged_probabilities(predictor, x, "fmp").probs)  # reproducible
    assert not torch.equal(twelve, predictor.predict_proba(x))


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        ("nonsense", (1, 8, 8), r"--tta 'nonsense': unknown policy; expected one of identity"),
        ("flip", (1, 40), r"--tta 'flip': it applies to images; this run takes signals of "
         r"shape \(1, 40\): use one of identity, shifts$"),
        ("crops", (1, 40), r"--tta 'crops': it applies to images"),
        ("shifts", (4,), r"--tta 'shifts': it applies to signals; this run takes features"),
        ("flip", (4,), r"use one of identity$"),
        ("fmp", (1, 8, 8), r"--tta 'fmp': the model has no fractional max pooling"),
    ],
)  # fmt: skip
def test_a_policy_that_does_not_fit_the_run_is_one_line(spec: str, shape: tuple, message: str):
    with pytest.raises(TrainlabError, match=message) as info:
        resolve_policies(spec, shape, nn.Sequential(nn.Flatten()))
    assert "\n" not in str(info.value)


def test_cli_evaluate_with_crops(digits_dropout_run: Path):
    from trainlab.cli import app

    done = CliRunner().invoke(
        app, ["evaluate", str(digits_dropout_run), "--tta", "crops", "--json"]
    )
    assert done.exit_code == 0, done.output
    report = last_json(done.stdout)
    assert set(report["tta"]["levels"]) == {"identity", "crops"}
    assert report["tta"]["levels"]["identity"]["test_acc"] == report["test_acc"]
    for bad in (["--tta", "nonsense"], ["--tta", "shifts"], ["--mc-dropout", "0"]):
        done = CliRunner().invoke(app, ["evaluate", str(digits_dropout_run), *bad])
        assert done.exit_code == 2
        lines = [line for line in done.output.splitlines() if line.startswith("trainlab:")]
        assert len(lines) == 1 and bad[1] in lines[0], done.output


def test_predict_with_tta(digits_dropout_run: Path, tmp_path: Path):
    predictor, x, y = _test_split(digits_dropout_run, 30)
    np.savez(tmp_path / "some.npz", x=x, y=y)
    result = trainlab.predict(digits_dropout_run, tmp_path / "some.npz", tta="translate")
    assert result["tta"] == "translate" and result["n"] == 30
    probs = averaged_probabilities(predictor, x, "translate").probs
    assert [r["class"] for r in result["rows"]] == probs.argmax(1).tolist()
    assert "entropy" not in result["rows"][0]
    with pytest.raises(TrainlabError, match="predict averages over one policy"):
        trainlab.predict(digits_dropout_run, tmp_path / "some.npz", tta="flip,crops")


def test_predict_takes_one_policy_and_says_so(digits_dropout_run: Path):
    predictor, x, _ = _test_split(digits_dropout_run, 8)
    with pytest.raises(TrainlabError, match=r"--tta flip,crops: one policy here"):
        averaged_probabilities(predictor, x, "flip,crops")


def test_the_recipe_key_adds_tta_to_the_summary_and_a_misfit_fails_before_training(
    tmp_path: Path,
):
    quick = ["training.epochs=1", "schedule.warmup_epochs=0", "training.progress=false"]
    result = trainlab.train(None, [*quick, "evaluation.tta=translate"], out=tmp_path / "r")
    tta = json.loads((tmp_path / "r" / "summary.json").read_text())["tta"]
    assert tta == result.summary["tta"] and set(tta["levels"]) == {"identity", "translate"}
    assert tta["levels"]["identity"]["test_acc"] == result.summary["test_acc"]
    again = trainlab.evaluate(tmp_path / "r", tta="translate", plot=False)["tta"]
    for name, level in tta["levels"].items():  # the same figures as evaluate --tta
        assert again["levels"][name] == pytest.approx(level)
    with pytest.raises(TrainlabError, match="--tta 'shifts': it applies to signals"):
        trainlab.train(None, [*quick, "evaluation.tta=shifts"], out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
