"""RandAugment, TrivialAugment, AutoAugment: torchvision's ops batched, drawn per sample."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from trainlab.data.augment import AUGMENTS
from trainlab.data.augment.photometric import Scaled
from trainlab.data.augment.policies import grouped_ops, magnitude_table, masked_ops
from trainlab.errors import RecipeError

POLICIES = ["randaugment", "trivialaugment", "autoaugment"]
SPACE = v2.TrivialAugmentWide._AUGMENTATION_SPACE  # the widest magnitudes
NAMES = [*SPACE, "Invert"]  # AutoAugment adds Invert
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
BLENDS = {"Color", "Contrast", "Sharpness"}  # batched mean/convolution: rounding differs

# torchvision's own dispatch from (op name, magnitude) to the v2.functional call: the CPU path
_REF = v2.TrivialAugmentWide(interpolation=v2.InterpolationMode.BILINEAR)


def _reference(img: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    return _REF._apply_image_or_video_transform(
        img, name, magnitude, interpolation=_REF.interpolation, fill=_REF._fill
    )


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _magnitudes(name: str, h: int, w: int) -> torch.Tensor:
    """Six per-sample magnitudes from the table, alternating signs for signed ops."""
    if name == "Invert":
        return torch.zeros(6, dtype=torch.float64)
    table = magnitude_table(SPACE, [name], 31, h, w)[0]
    m = table[[0, 3, 9, 15, 22, 30]]
    return m * torch.tensor([1.0, -1, 1, -1, 1, -1]).double() if SPACE[name][1] else m


# the CPU's grouped ops and the GPU's sync-free masked ops, both tested on the CPU
PATHS = pytest.mark.parametrize("apply_ops", [grouped_ops, masked_ops], ids=["grouped", "masked"])


@PATHS
@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", NAMES)
def test_each_batched_op_equals_torchvision_image_by_image(name, channels, apply_ops):
    h, w = 14, 17  # not square: catches swapped axes
    x = torch.rand(6, channels, h, w, generator=_gen(0))
    m = _magnitudes(name, h, w)  # a different magnitude for each sample
    out = apply_ops(x, torch.full((6,), NAMES.index(name)), m, NAMES)
    ref = torch.stack([_reference(x[i], name, float(m[i])) for i in range(6)])
    if name in GEOMETRIC:  # bilinear on both sides; the grids differ by rounding
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    elif name in BLENDS:
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    else:
        assert torch.equal(out, ref)


@PATHS
def test_a_batch_of_mixed_ops_applies_each_samples_own_op(apply_ops):
    h, w = 12, 12
    n = 3 * len(NAMES)
    x = torch.rand(n, 3, h, w, generator=_gen(1))
    op = torch.arange(n) % len(NAMES)
    op[-1] = -1  # no op at all
    m = torch.stack([_magnitudes(NAMES[k], h, w)[i % 6] for i, k in enumerate(op.tolist())])
    out = apply_ops(x, op, m, NAMES)
    for i, k in enumerate(op.tolist()):
        ref = x[i] if k < 0 else _reference(x[i], NAMES[k], float(m[i]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", POLICIES)
def test_the_masked_path_reads_nothing_back_and_gives_the_grouped_paths_images(name, monkeypatch):
    """Two rounds of a policy's own draws: the same images either way, and the masked path
    (the one a GPU takes) never turns a tensor into a Python value."""
    augment = AUGMENTS.build(name)
    x = torch.rand(24, 3, 12, 12, generator=_gen(5))
    augment.fit(x)
    rounds = augment.draw(x, _gen(6))
    grouped = x
    for op, m in rounds:
        grouped = grouped_ops(grouped, op, m, augment.names)

    def no_readback(*args, **kwargs):
        raise AssertionError("a host read-back")

    monkeypatch.setattr(torch.Tensor, "tolist", no_readback)
    monkeypatch.setattr(torch.Tensor, "item", no_readback)
    masked = x
    for op, m in rounds:
        masked = masked_ops(masked, op, m, augment.names)
    monkeypatch.undo()
    torch.testing.assert_close(masked, grouped, atol=1e-6, rtol=0)


def test_identical_images_get_different_ops():
    x = torch.rand(1, 3, 12, 12, generator=_gen(2)).expand(64, 3, 12, 12).contiguous()
    for name in POLICIES:
        out = AUGMENTS.build(name).batch(x, _gen(3))
        distinct = torch.unique(out.flatten(1), dim=0)
        assert len(distinct) > 10, name


def _assert_uniform(values: torch.Tensor, k: int) -> None:
    counts = torch.bincount(values, minlength=k).double()
    n = float(counts.sum())
    sd = (n / k * (1 - 1 / k)) ** 0.5
    assert len(counts) == k and float((counts - n / k).abs().max()) < 5 * sd, counts


def test_randaugment_draws_ops_uniformly_per_sample_and_round():
    aug = AUGMENTS.build("randaugment", num_ops=2, magnitude=9)
    rounds = aug.draw(torch.zeros(7000, 3, 8, 8), _gen(4))
    assert len(rounds) == 2
    for op, m in rounds:
        _assert_uniform(op, len(aug.names))
        rotate = op == aug.names.index("Rotate")
        assert set(m[rotate].tolist()) == {9.0, -9.0}  # linspace(0, 30, 31)[9], either sign
        assert abs(float((m[rotate] > 0).double().mean()) - 0.5) < 0.1
    assert float((rounds[0][0] == rounds[1][0]).double().mean()) < 0.15  # independent rounds


def test_trivialaugment_draws_op_and_magnitude_bin_per_sample():
    aug = AUGMENTS.build("trivialaugment")
    ((op, m),) = aug.draw(torch.zeros(14000, 3, 8, 8), _gen(5))
    _assert_uniform(op, len(aug.names))
    shear = op == aug.names.index("ShearX")
    levels = torch.round(m[shear].abs() / 0.99 * 30).long()  # linspace(0, 0.99, 31)
    _assert_uniform(levels, 31)


def test_autoaugment_draws_subpolicies_with_their_probabilities():
    aug = AUGMENTS.build("autoaugment", policy="cifar10")
    n = 20000
    rounds = aug.draw(torch.zeros(n, 3, 8, 8), _gen(6))
    k = len(aug.names)
    for step, (op, _) in enumerate(rounds):
        expected = torch.zeros(k + 1, dtype=torch.float64)
        for sub in aug.subpolicies:
            name, p, _ = sub[step]
            expected[aug.names.index(name)] += p / len(aug.subpolicies)
            expected[k] += (1 - p) / len(aug.subpolicies)  # skipped: op -1
        counts = torch.bincount(torch.where(op < 0, k, op), minlength=k + 1).double()
        sd = (n * expected * (1 - expected)).sqrt()
        assert bool(((counts - n * expected).abs() <= 5 * sd + 1).all()), (step, counts)


@pytest.mark.parametrize("name", POLICIES)
def test_policies_keep_shape_dtype_and_range_on_both_paths(name):
    x01 = torch.rand(32, 3, 10, 10, generator=_gen(7))
    x01[0, 0, 0, 0] = 1.0  # the bound is the data's maximum
    for bound in (1.0, 16.0):
        aug = AUGMENTS.build(name)
        aug.fit(bound * x01)
        out = aug.batch(bound * x01, _gen(8))
        assert out.shape == x01.shape and out.dtype == x01.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= bound + 1e-5
        if bound == 1.0:
            base = out
        else:  # the same draws act on x / bound: the result scales with it
            torch.testing.assert_close(out, 16 * base, atol=2e-4, rtol=1e-4)
        cpu = aug.transform()(bound * x01[1])
        assert cpu.shape == x01[1].shape and float(cpu.max()) <= bound + 1e-5


def test_cpu_paths_are_torchvisions_transforms():
    x = torch.rand(4, 3, 8, 8)
    expected = {
        "randaugment": v2.RandAugment,
        "trivialaugment": v2.TrivialAugmentWide,
        "autoaugment": v2.AutoAugment,
    }
    for name, cls in expected.items():
        aug = AUGMENTS.build(name)
        aug.fit(x)
        t = aug.transform()
        assert isinstance(t, cls) and t.interpolation == v2.InterpolationMode.BILINEAR
        aug.fit(16 * x / x.max())
        assert isinstance(aug.transform(), Scaled)
    small = AUGMENTS.build("randaugment", num_ops=1, magnitude=5, num_magnitude_bins=11)
    assert (small.transform().num_ops, small.transform().num_magnitude_bins) == (1, 11)


def test_randaugment_refuses_a_magnitude_outside_the_bins():
    with pytest.raises(RecipeError, match="num_magnitude_bins"):
        AUGMENTS.build("randaugment", magnitude=31)


def test_policies_refuse_other_channel_counts():
    for name in POLICIES:
        with pytest.raises(RecipeError, match="1 or 3 channels"):
            AUGMENTS.build(name).fit(torch.rand(4, 4, 8, 8))
