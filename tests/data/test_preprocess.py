"""Preprocessing: fitted on train only, matching the lecture's formulas, saved and reloaded."""

from __future__ import annotations

import pytest
import torch

from trainlab.data.preprocess import PREPROCESSORS, create_preprocessor


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
    fitted = create_preprocessor(name, 1e-5).fit(x)
    fresh = create_preprocessor(name, 1e-5)
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
