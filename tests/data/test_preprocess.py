"""Preprocessing: fitted on train only, matching the lecture's formulas, saved and reloaded."""

from __future__ import annotations

import pytest
import torch

from trainlab.api import list_components
from trainlab.data.preprocess import (
    AUTO,
    PREPROCESSORS,
    PerChannel,
    Standardize,
    create_preprocessor,
    resolve_preprocess_name,
)
from trainlab.errors import RecipeError


def _images(n=512, seed=0):
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 4, 4, generator=gen)
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 1.0, 0.7], [0.0, 0.0, 1.0]])
    return torch.einsum("nchw,cd->ndhw", base, mix) * 5 + 2  # correlated channels, offset


def test_standardize_gives_zero_mean_unit_std_per_feature_on_train():
    x = _images()
    out = create_preprocessor("standardize", 1e-5).fit(x)(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(3, 4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0), torch.ones(3, 4, 4), atol=1e-4, rtol=0)


def test_zero_center_and_mean_image_subtract_the_train_mean_image():
    x, other = _images(), _images(seed=1)
    for name in ("zero_center", "mean_image"):
        pre = create_preprocessor(name, 1e-5).fit(x)
        torch.testing.assert_close(pre(other), other - x.mean(0, keepdim=True))


def test_per_channel_uses_one_mean_and_std_per_channel():
    x = _images()
    pre = create_preprocessor("per_channel", 1e-5).fit(x)
    assert pre.mean.shape == (1, 3, 1, 1)
    out = pre(x)
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["pca", "zca"])
def test_whitening_gives_identity_covariance_on_train(name):
    x = _images(2048)
    out = create_preprocessor(name, 1e-8).fit(x)(x).reshape(len(x), -1).double()
    cov = torch.cov(out.T)
    torch.testing.assert_close(cov, torch.eye(cov.shape[0], dtype=cov.dtype), atol=2e-3, rtol=0)


def test_zca_stays_close_to_the_input_while_pca_rotates():
    x = _images(2048)
    flat = (x - x.mean(0)).reshape(len(x), -1)
    zca = create_preprocessor("zca", 1e-5).fit(x)(x).reshape(len(x), -1)
    pca = create_preprocessor("pca", 1e-5).fit(x)(x).reshape(len(x), -1)
    corr = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=1).mean()  # noqa: E731
    assert corr(zca, flat) > corr(pca, flat)


def test_epsilon_bounds_the_whitening_gain():
    x = _images(256)
    big = create_preprocessor("zca", 1.0).fit(x)(x)
    small = create_preprocessor("zca", 1e-6).fit(x)(x)
    assert big.std() < small.std()


@pytest.mark.parametrize("name", PREPROCESSORS.names())
def test_state_round_trips_so_evaluation_applies_the_same_transform(name):
    x, other = _images(), _images(seed=3)
    shape = tuple(x.shape[1:])  # auto resolves from it; other names ignore it
    fitted = create_preprocessor(name, 1e-5, shape).fit(x)
    fresh = create_preprocessor(name, 1e-5, shape)
    fresh.init_buffers(tuple(x.shape[1:]))
    fresh.load_state_dict(fitted.state_dict())
    torch.testing.assert_close(fresh(other), fitted(other))


@pytest.mark.parametrize("name", ["standardize", "per_channel"])
def test_constant_features_are_not_divided_by_epsilon(name):
    x = _images()
    x[:, 0] = 0.0  # a channel (and its pixels) constant on train, like digits' empty borders
    pre = create_preprocessor(name, 1e-5).fit(x)
    other = _images(seed=5)
    assert pre(other)[:, 0].abs().max() < 100  # other - 0, divided by 1 rather than by 1e-5


def test_per_channel_mean_subtracts_the_channel_means_by_hand_and_does_not_divide():
    """Lecture 000: "subtract per-channel mean (e.g. VGGNet): 3 numbers"."""
    x, other = _images(), _images(seed=7)
    pre = create_preprocessor("per_channel_mean", 1e-5).fit(x)
    means = [float(x[:, c].sum()) / x[:, c].numel() for c in range(3)]  # sum / (N * H * W)
    assert pre.mean.shape == (1, 3, 1, 1)
    torch.testing.assert_close(pre.mean.flatten(), torch.tensor(means), atol=1e-5, rtol=0)
    expected = torch.stack([other[:, c] - means[c] for c in range(3)], 1)
    torch.testing.assert_close(pre(other), expected, atol=1e-5, rtol=0)
    assert float(pre(x).std()) == pytest.approx(float((x - x.mean((0, 2, 3), True)).std()))
    assert set(pre.state_dict()) == {"mean"}  # only the means are saved with the weights


def test_per_channel_mean_works_on_sequences():
    x = torch.arange(24.0).reshape(4, 2, 3)  # (N, C, L)
    out = create_preprocessor("per_channel_mean", 1e-5).fit(x)(x)
    torch.testing.assert_close(out.mean((0, 2)), torch.zeros(2))
    torch.testing.assert_close(out[0, 0], x[0, 0] - x[:, 0].mean())


@pytest.mark.parametrize(
    "in_shape, expected",
    [
        ((1, 8, 8), "per_channel"),
        ((3, 32, 32), "per_channel"),
        ((1, 40), "per_channel"),
        ((2,), "standardize"),
        ((64,), "standardize"),
    ],
)
def test_auto_is_per_channel_with_spatial_dims_and_standardize_for_feature_vectors(
    in_shape, expected
):
    assert resolve_preprocess_name(AUTO, in_shape) == expected
    assert resolve_preprocess_name("zca", in_shape) == "zca"  # a concrete name passes through
    pre = create_preprocessor(AUTO, 1e-5, in_shape)
    assert type(pre) is {"per_channel": PerChannel, "standardize": Standardize}[expected]


def test_auto_without_a_shape_is_a_clear_error_not_a_preprocessor():
    with pytest.raises(RecipeError, match="preprocess.name=auto: chosen from the data's shape"):
        create_preprocessor(AUTO, 1e-5)


def test_only_per_position_divisions_and_rotations_are_flagged():
    """The flag the recipe reads to refuse them beside augmentations that move positions."""
    flagged = {e.name for e in PREPROCESSORS if e.info.get("per_position_scale")}
    assert flagged == {"standardize", "pca", "zca"}


@pytest.mark.parametrize("name", ["standardize", "pca", "zca"])
def test_flagged_preprocessing_blows_up_on_shifted_inputs_and_mean_only_ones_do_not(name):
    """Why the flag: a one-pixel shift of centred images puts values where the training std is
    tiny; per-position division then gives hundreds, mean subtraction stays in the raw range."""
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(512, 1, 8, 8)
    x[:, :, 2:6, 2:6] = 16 * torch.rand(512, 1, 4, 4, generator=gen)  # ink in the centre only
    x[:, :, 1:7, 1:7] += 0.01 * torch.rand(512, 1, 6, 6, generator=gen)  # a faint rim
    shifted = torch.roll(x, 2, dims=-1)
    assert create_preprocessor(name, 1e-5).fit(x)(shifted).abs().max() > 100
    for mean_only in ("zero_center", "per_channel_mean", "per_channel"):
        assert create_preprocessor(mean_only, 1e-5).fit(x)(shifted).abs().max() < 20


def test_list_shows_auto_first_with_what_it_picks():
    listed = list_components("preprocess")["preprocess"]
    assert next(iter(listed)) == AUTO  # the schema's default leads the table
    assert "per_channel" in listed[AUTO]["summary"] and "standardize" in listed[AUTO]["summary"]
    assert listed[AUTO]["params"] == {"eps": 1e-5}
    assert "per_channel_mean" in listed
