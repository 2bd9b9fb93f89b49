"""1-D signal augmentations (MNIST-1D): per-sample parameters, one definition on both paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.augment_util import gen, torch_calls
from trainlab.data.augment import AUGMENTS, Pipeline
from trainlab.errors import RecipeError

NAMES = ["shift", "time_scale", "amplitude", "gaussian_noise"]


def signals(n: int = 64, c: int = 2, length: int = 40) -> torch.Tensor:
    return torch.randn(n, c, length, generator=gen(123))


@pytest.mark.parametrize("mode", ["circular", "zeros"])
def test_shift_translates_each_sample_by_its_own_whole_number_of_samples(mode):
    x = signals(400)
    aug = AUGMENTS.build("shift", max_shift=3, mode=mode)
    out = aug.batch(x, gen(1))
    k = aug.sample(x, gen(1))  # the same draws
    assert set(k.tolist()) == set(range(-3, 4))  # every shift occurs: per sample
    for xi, oi, ki in zip(x, out, k.tolist(), strict=True):
        ref = torch.roll(xi, ki, -1)  # positive: later in time
        if mode == "zeros" and ki > 0:
            ref[:, :ki] = 0
        elif mode == "zeros" and ki < 0:
            ref[:, ki:] = 0
        assert torch.equal(oi, ref)


def test_time_scale_stretches_about_the_centre_with_linear_interpolation():
    length = 41
    ramp = torch.arange(length, dtype=torch.float32).expand(500, 1, length)
    aug = AUGMENTS.build("time_scale", stretch=0.2)
    out = aug.batch(ramp, gen(2))
    factor = aug.sample(ramp, gen(2))
    assert float(factor.min()) >= 0.8 and float(factor.max()) <= 1.2
    assert float(factor.min()) < 0.82 and float(factor.max()) > 1.18 and factor.std() > 0.1
    centre = (length - 1) / 2
    mid = slice(15, 26)  # away from the ends, where compressed signals repeat the edge
    slope = (out[:, 0, mid][:, -1] - out[:, 0, mid][:, 0]) / 10
    torch.testing.assert_close(slope, 1 / factor)  # stretched by the sample's own factor
    torch.testing.assert_close(out[:, 0, 20], torch.full((500,), centre))  # about the centre
    # against numpy's linear interpolation (edge values repeat past the ends)
    x = signals(8, 1, 40)
    f = torch.tensor([0.8, 0.9, 1.0, 1.1, 1.2, 0.85, 1.15, 1.05])
    t = np.arange(40)
    for xi, oi, fi in zip(x, aug.apply(x, f), f.tolist(), strict=True):
        ref = np.interp(19.5 + (t - 19.5) / fi, t, xi[0].numpy())
        np.testing.assert_allclose(oi[0].numpy(), ref, atol=1e-5)
    assert torch.equal(aug.apply(x, torch.ones(8)), x)


def test_amplitude_multiplies_each_sample_by_a_factor_in_range():
    x = signals(2000).abs() + 0.1
    out = AUGMENTS.build("amplitude", factor=(0.8, 1.2)).batch(x, gen(3))
    ratio = out / x
    per_sample = ratio[:, 0, 0]
    torch.testing.assert_close(ratio, per_sample[:, None, None].expand_as(ratio))  # one per sample
    assert float(per_sample.min()) >= 0.8 and float(per_sample.max()) <= 1.2
    assert abs(float(per_sample.mean()) - 1.0) < 0.01
    assert abs(float(per_sample.std()) - 0.4 / 12**0.5) < 0.01  # uniform on [0.8, 1.2]


@pytest.mark.parametrize("shape", [(2, 40), (3, 8, 8)])
def test_gaussian_noise_adds_noise_of_the_given_std_to_sequences_and_images(shape):
    x = torch.zeros(500, *shape)
    out = AUGMENTS.build("gaussian_noise", std=0.1).batch(x, gen(4))
    assert abs(float(out.std()) - 0.1) < 0.002 and abs(float(out.mean())) < 0.002
    assert len(torch.unique(out.flatten(1), dim=0)) == 500  # independent per sample


@pytest.mark.parametrize("name", NAMES)
def test_cpu_path_is_the_batched_code_on_one_sample_with_the_global_rng(name):
    aug = AUGMENTS.build(name)
    t = aug.transform()
    x = signals(1)[0]
    torch.manual_seed(7)
    out = t(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.manual_seed(7)
    assert torch.equal(out, aug.batch(x[None], None)[0])
    outs = set()
    for seed in range(10):  # the DataLoader seeds each sample differently: outputs differ
        torch.manual_seed(seed)
        outs.add(tuple(t(x).flatten().tolist()))
    assert len(outs) > 3


@pytest.mark.parametrize("name", NAMES)
def test_identical_inputs_get_different_transforms_and_seeds_reproduce(name):
    x = signals(1, 1)[0].expand(64, 1, 40).contiguous()
    aug = AUGMENTS.build(name, **({"max_shift": 8} if name == "shift" else {}))
    out = aug.batch(x, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert len(torch.unique(out.flatten(1), dim=0)) >= (16 if name == "shift" else 60)
    assert torch.equal(out, aug.batch(x, gen(1)))
    assert not torch.equal(out, aug.batch(x, gen(2)))


@pytest.mark.parametrize("name", NAMES)
def test_device_path_has_no_python_loop_over_samples(name):
    aug = AUGMENTS.build(name)
    small, large = signals(2), signals(64)
    assert torch_calls(lambda: aug.batch(small, gen())) == torch_calls(
        lambda: aug.batch(large, gen())
    )


@pytest.mark.parametrize("name", ["shift", "time_scale", "amplitude"])
def test_sequence_only_augments_are_refused_on_images(name):
    aug = AUGMENTS.build(name)
    Pipeline([aug]).check((1, 40))
    with pytest.raises(RecipeError, match="sequences"):
        Pipeline([aug]).check((3, 8, 8))


def test_gaussian_noise_applies_to_both():
    aug = AUGMENTS.build("gaussian_noise")
    Pipeline([aug]).check((1, 40))
    Pipeline([aug]).check((3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_runs_on_cuda_with_a_cuda_generator(name):
    aug = AUGMENTS.build(name)
    x = signals(8).cuda()
    out = aug.batch(x, torch.Generator(device="cuda").manual_seed(0))
    assert out.device.type == "cuda" and out.shape == x.shape
    assert torch.equal(out, aug.batch(x, torch.Generator(device="cuda").manual_seed(0)))
