"""Colour jitter and PCA lighting: torchvision's formulas, AlexNet's offsets, per-sample draws."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from trainlab.data.augment import AUGMENTS
from trainlab.data.augment.photometric import ColorJitter
from trainlab.errors import RecipeError

ADJUST = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_equals_torchvision_adjust_ops_in_each_order(channels):
    perms = list(itertools.permutations(range(3)))  # every order, one per sample
    x = torch.rand(len(perms), channels, 9, 11, generator=_gen(0))
    factors = 0.3 + 1.4 * torch.rand(len(perms), 3, generator=_gen(1))
    order = torch.tensor(perms)
    out = ColorJitter.apply(x, factors, order)
    for i, perm in enumerate(perms):
        ref = x[i]
        for op in perm:
            ref = ADJUST[op](ref, float(factors[i, op]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    assert not torch.equal(out[0], out[1])  # the order matters: it is drawn per sample


def test_color_jitter_draws_factors_and_orders_per_sample():
    aug = AUGMENTS.build("color_jitter", brightness=0.2, contrast=0.5, saturation=1.5)
    n = 6000
    factors, order = aug.draw(torch.zeros(n, 3, 1, 1), _gen(2))
    for k, (lo, hi) in enumerate([(0.8, 1.2), (0.5, 1.5), (0.0, 2.5)]):  # max(0, 1 - s), 1 + s
        f = factors[:, k]
        assert lo <= float(f.min()) < lo + 0.01 and hi - 0.01 < float(f.max()) <= hi
        assert abs(float(f.mean()) - (lo + hi) / 2) < 0.02 * (hi - lo)
    assert torch.equal(order.sort(1).values, torch.arange(3).expand(n, 3))  # permutations
    _, counts = torch.unique(order, dim=0, return_counts=True)
    assert len(counts) == 6 and int((counts - n / 6).abs().max()) < 150  # uniform orders


def test_color_jitter_batch_keeps_shape_range_and_leaves_zero_strength_alone():
    x = torch.rand(64, 3, 6, 6, generator=_gen(3))
    aug = AUGMENTS.build("color_jitter")
    aug.fit(x)
    out = aug.batch(x, _gen(4))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    changed = (out - x).flatten(1).abs().amax(1) > 1e-3
    assert int(changed.sum()) > 60  # independently per sample
    idle = AUGMENTS.build("color_jitter", brightness=0.0, contrast=0.0, saturation=0.0)
    assert torch.equal(idle.batch(x, _gen(4)), x)


def test_color_jitter_works_relative_to_the_value_bound():
    x01 = torch.rand(32, 1, 8, 8, generator=_gen(5))
    x01[0, 0, 0, 0] = 1.0  # the bound is the data's maximum: 16 here
    x16 = 16 * x01  # scikit-learn digits range 0..16
    aug16, aug01 = AUGMENTS.build("color_jitter"), AUGMENTS.build("color_jitter")
    aug16.fit(x16)
    aug01.fit(x01)
    out16 = aug16.batch(x16, _gen(6))
    torch.testing.assert_close(out16, 16 * aug01.batch(x01, _gen(6)), atol=1e-5, rtol=1e-5)
    assert float(out16.max()) <= 16.0
    torch.manual_seed(7)
    cpu16 = aug16.transform()(x16[0])
    torch.manual_seed(7)
    torch.testing.assert_close(cpu16, 16 * aug01.transform()(x01[0]), atol=1e-5, rtol=1e-5)


def test_color_jitter_cpu_path_is_v2_color_jitter():
    aug = AUGMENTS.build("color_jitter", brightness=0.1, contrast=0.2, saturation=0.3)
    aug.fit(torch.rand(4, 3, 5, 5))
    t = aug.transform()
    assert isinstance(t, v2.ColorJitter)
    assert t.brightness == pytest.approx((0.9, 1.1)) and t.saturation == pytest.approx((0.7, 1.3))


def test_color_jitter_refuses_other_channel_counts():
    with pytest.raises(RecipeError, match="1 or 3 channels"):
        AUGMENTS.build("color_jitter").fit(torch.rand(4, 2, 5, 5))


def _correlated_rgb(n: int, seed: int, size: int = 6) -> torch.Tensor:
    g = _gen(seed)
    mix = torch.tensor([[0.5, 0.3, 0.1], [0.4, 0.4, 0.1], [0.2, 0.3, 0.3]])
    z = torch.rand(n, size, size, 3, generator=g)
    return (z @ mix.T).permute(0, 3, 1, 2).contiguous()


def test_pca_lighting_eigenpairs_are_numpys_eigh_of_the_pixel_covariance():
    x = _correlated_rgb(40, 0)
    aug = AUGMENTS.build("pca_lighting")
    aug.fit(x)
    pixels = x.double().permute(1, 0, 2, 3).reshape(3, -1).numpy()
    lam, vec = np.linalg.eigh(np.cov(pixels))
    np.testing.assert_allclose(aug.eigenvalues.numpy(), lam, rtol=1e-5)
    dots = np.abs(np.sum(aug.eigenvectors.double().numpy() * vec, axis=0))  # up to sign
    np.testing.assert_allclose(dots, 1.0, atol=1e-5)


def test_pca_lighting_adds_alpha_lambda_p_per_image():
    x = _correlated_rgb(16, 1)
    aug = AUGMENTS.build("pca_lighting", sigma=0.5)
    aug.fit(x)
    out = aug.batch(x, _gen(9))
    alpha = 0.5 * torch.randn(16, 3, generator=_gen(9)).double().numpy()  # the same draws
    lam, vec = aug.eigenvalues.double().numpy(), aug.eigenvectors.double().numpy()
    expected = np.stack([sum(a[i] * lam[i] * vec[:, i] for i in range(3)) for a in alpha])
    shift = (out - x).double()
    assert float((shift - shift[:, :, :1, :1]).abs().max()) < 1e-6  # the same for every pixel
    np.testing.assert_allclose(shift[:, :, 0, 0].numpy(), expected, atol=1e-6)
    assert len({round(float(s), 6) for s in shift[:, 2, 0, 0]}) == 16  # its own per image


def test_pca_lighting_offsets_average_zero_with_spread_sigma_lambda_along_each_p():
    x = _correlated_rgb(8, 2)
    aug = AUGMENTS.build("pca_lighting", sigma=0.1)
    aug.fit(x)
    n = 20000
    shift = aug.batch(torch.zeros(n, 3, 1, 1), _gen(3)).view(n, 3).double()  # x = 0
    lam, vec = aug.eigenvalues.double(), aug.eigenvectors.double()
    along = shift @ vec  # coordinates on p_1, p_2, p_3: alpha_i lambda_i
    assert bool((along.mean(0).abs() < 5 * 0.1 * lam / n**0.5).all())
    torch.testing.assert_close(along.std(0), 0.1 * lam, rtol=0.05, atol=0)


def test_pca_lighting_cpu_path_uses_the_fitted_eigenpairs_and_the_global_rng():
    x = _correlated_rgb(8, 4)
    aug = AUGMENTS.build("pca_lighting", sigma=0.3)
    aug.fit(x)
    t = aug.transform()
    torch.manual_seed(11)
    out = t(x[0])
    torch.manual_seed(11)
    alpha = 0.3 * torch.randn(1, 3)
    offset = (alpha * aug.eigenvalues) @ aug.eigenvectors.T
    torch.testing.assert_close(out - x[0], offset.view(3, 1, 1).expand_as(x[0]), atol=1e-6, rtol=0)


def test_pca_lighting_is_relative_to_the_value_bound():
    x = _correlated_rgb(8, 5)
    x = x / x.max()  # the bound is the data's maximum: 1 and 255
    aug1, aug255 = AUGMENTS.build("pca_lighting"), AUGMENTS.build("pca_lighting")
    aug1.fit(x)
    aug255.fit(255 * x)
    torch.testing.assert_close(aug255.eigenvalues, aug1.eigenvalues)
    shift255 = aug255.batch(255 * x, _gen(1)) - 255 * x
    torch.testing.assert_close(shift255, 255 * (aug1.batch(x, _gen(1)) - x), atol=1e-4, rtol=1e-4)


def test_pca_lighting_needs_rgb_images():
    with pytest.raises(RecipeError, match="3 channels") as err:
        AUGMENTS.build("pca_lighting").fit(torch.rand(4, 1, 8, 8))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["color_jitter", "pca_lighting", "randaugment"])
def test_standardised_inputs_are_refused_not_clipped(name):
    aug = AUGMENTS.build(name)
    with pytest.raises(RecipeError, match="negative values"):
        aug.fit(torch.randn(4, 3, 8, 8))
