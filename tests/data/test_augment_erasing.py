"""Cutout and random erasing: box sizes and probabilities per sample, v2's meaning on both paths."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from tests.data.augment_util import gen, torch_calls
from trainlab.data.augment import AUGMENTS, Pipeline
from trainlab.errors import RecipeError
from trainlab.recipe import validate

NAMES = ["cutout", "random_erasing"]


def erased(out: torch.Tensor) -> torch.Tensor:
    """Per sample, the erased positions of an all-ones input (erased with value 0)."""
    return out[:, 0] == 0


def test_cutout_blanks_a_clipped_square_centred_uniformly_with_probability_p():
    n, size = 4000, 8
    out = AUGMENTS.build("cutout", p=0.5, size=size).batch(torch.ones(n, 3, 32, 32), gen())
    mask = erased(out)
    assert torch.equal(mask, out.eq(0).all(1))  # every channel alike
    area = mask.sum((1, 2))
    hit = area > 0
    assert 1850 < int(hit.sum()) < 2150  # Binomial(4000, 0.5): p per sample
    assert int(area.max()) == size * size
    rows, cols = mask.any(2), mask.any(1)
    # a box: its area is the product of its extents, each at most `size`
    assert torch.equal(area, rows.sum(1) * cols.sum(1))
    assert int(rows.sum(1).max()) == size and int(cols.sum(1).max()) == size
    # the centre is uniform over the 32 pixels of each axis and the square [c - 4, c + 4)
    # lies wholly inside for c in [4, 28]: (25 / 32)^2 of the erased samples, the rest clipped
    whole = (area[hit] == size * size).float().mean()
    assert abs(float(whole) - (25 / 32) ** 2) < 0.04
    corners = mask[hit][:, [0, 0, -1, -1], [0, -1, 0, -1]].float().mean(0)
    assert bool(((corners > 0.005) & (corners < 0.03)).all())  # clipped at every border


def test_cutout_on_sequences_blanks_a_segment():
    out = AUGMENTS.build("cutout", p=1.0, size=5).batch(torch.ones(500, 2, 40), gen())
    mask = out[:, 0] == 0
    length = mask.sum(1)
    assert int(length.min()) >= 3 and int(length.max()) == 5  # centred, clipped at the ends
    first = mask.float().argmax(1)
    assert bool((mask.cumsum(1)[torch.arange(500), first + length - 1] == length).all())
    assert first.unique().numel() > 30  # positions per sample


def test_cutout_cpu_path_draws_from_the_global_rng_like_the_batch():
    aug = AUGMENTS.build("cutout", p=0.7, size=6)
    img = torch.rand(3, 16, 16)
    torch.manual_seed(3)
    cpu = aug.transform()(img)
    assert cpu.shape == img.shape and cpu.dtype == img.dtype
    torch.manual_seed(3)
    assert torch.equal(cpu, aug.batch(img[None], None)[0])
    rates = []
    for seed in range(200):
        torch.manual_seed(seed)
        rates.append(bool((aug.transform()(img) == 0).any()))
    assert 0.6 < sum(rates) / 200 < 0.8  # p = 0.7


def test_random_erasing_boxes_follow_v2s_scale_and_ratio():
    h, w, n = 32, 32, 4000
    aug = AUGMENTS.build("random_erasing", p=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3))
    apply, low, high = aug.sample(torch.zeros(n, 1, h, w), gen())
    side = (high - low).float()
    assert bool(apply.all())  # with these ranges some try always fits
    assert bool((low >= 0).all() and (high[:, 0] < h + 1).all() and (side[:, 0] < h).all())
    assert bool((side[:, 1] < w).all())  # strictly smaller than the image, as v2
    area = side.prod(1) / (h * w)
    assert float(area.min()) > 0.02 * 0.6 and float(area.max()) < 0.33 * 1.15  # rounded sides
    aspect = side[:, 0] / side[:, 1]
    assert float(aspect.min()) > 0.3 * 0.7 and float(aspect.max()) < 3.3 / 0.7
    # the distribution of v2.RandomErasing's own sampler
    t = v2.RandomErasing(p=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3))
    torch.manual_seed(0)
    ref = [t.make_params([torch.zeros(1, h, w)]) for _ in range(2000)]
    ref_area = torch.tensor([p["h"] * p["w"] / (h * w) for p in ref])
    ref_aspect = torch.tensor([p["h"] / max(p["w"], 1) for p in ref])
    assert abs(float(area.mean()) - float(ref_area.mean())) < 0.01
    assert abs(float(aspect.log().mean()) - float(ref_aspect.log().mean())) < 0.06
    assert low[:, 0].unique().numel() > 20 and low[:, 1].unique().numel() > 20


def test_random_erasing_batch_erases_the_sampled_boxes_with_probability_p():
    aug = AUGMENTS.build("random_erasing", p=0.5, value=0.0)
    x = torch.ones(2000, 3, 16, 16)
    out = aug.batch(x, gen(4))
    apply, low, high = aug.sample(x, gen(4))  # the same draws
    area = erased(out).sum((1, 2))
    assert torch.equal(area, torch.where(apply, (high - low).prod(1), 0))
    assert 900 < int(apply.sum()) < 1100


def test_random_erasing_fixed_box_matches_v2_functional_erase():
    aug = AUGMENTS.build("random_erasing", value=0.25)
    img = torch.rand(3, 12, 20)
    low, high = torch.tensor([[2, 5]]), torch.tensor([[9, 8]])
    out = aug.apply(img[None], torch.tensor([True]), low, high)[0]
    assert torch.equal(out, TF.erase(img, 2, 5, 7, 3, torch.tensor(0.25)))


def test_random_erasing_none_fits_means_no_erasing_as_v2():
    aug = AUGMENTS.build("random_erasing", p=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    x = torch.rand(16, 1, 8, 8)
    assert torch.equal(aug.batch(x, gen()), x)


def test_random_erasing_cpu_path_is_v2_for_images_and_batch_code_for_sequences():
    aug = AUGMENTS.build("random_erasing", p=1.0, value=0.5)
    t = aug.transform()
    img = torch.ones(3, 16, 16)
    torch.manual_seed(0)
    out = t(img)
    torch.manual_seed(0)
    ref = v2.RandomErasing(p=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.5)(img)
    assert torch.equal(out, ref) and out.shape == img.shape and out.dtype == img.dtype
    fractions = []
    for seed in range(200):
        torch.manual_seed(seed)
        fractions.append(float((t(img) == 0.5).float().mean()))
    assert min(fractions) > 0.02 * 0.6 and max(fractions) < 0.33 * 1.15
    seq = torch.ones(2, 40)
    torch.manual_seed(1)
    out = t(seq)
    torch.manual_seed(1)
    assert out.shape == seq.shape and torch.equal(out, aug.batch(seq[None], None)[0])


def test_random_erasing_on_sequences_erases_a_segment_of_the_configured_fraction():
    aug = AUGMENTS.build("random_erasing", p=1.0, scale=(0.1, 0.3))
    out = aug.batch(torch.ones(2000, 1, 100), gen())
    length = (out[:, 0] == 0).sum(1)
    assert int(length.min()) >= 10 and int(length.max()) <= 30
    assert abs(float(length.float().mean()) - 20) < 0.5


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 40)])
def test_per_sample_draws_are_reproducible_from_the_generator(name, shape):
    aug = AUGMENTS.build(name, p=1.0)
    x = torch.ones(64, *shape)
    out = aug.batch(x, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    distinct = len(torch.unique(out.flatten(1), dim=0))
    assert distinct > (50 if len(shape) == 3 else 25)  # per-sample boxes (40 positions in 1-D)
    assert torch.equal(out, aug.batch(x, gen(1)))
    assert not torch.equal(out, aug.batch(x, gen(2)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 40)])
def test_device_path_has_no_python_loop_over_samples(name, shape):
    aug = AUGMENTS.build(name)
    small, large = torch.rand(2, *shape), torch.rand(64, *shape)
    assert torch_calls(lambda: aug.batch(small, gen())) == torch_calls(
        lambda: aug.batch(large, gen())
    )


@pytest.mark.parametrize("name", NAMES)
def test_apply_to_images_and_sequences(name):
    aug = AUGMENTS.build(name)
    Pipeline([aug]).check((3, 16, 16))
    Pipeline([aug]).check((1, 40))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_runs_on_cuda_with_a_cuda_generator(name):
    aug = AUGMENTS.build(name, p=1.0)
    x = torch.ones(8, 3, 16, 16, device="cuda")
    out = aug.batch(x, torch.Generator(device="cuda").manual_seed(0))
    assert out.device.type == "cuda" and bool((out == 0).any())
    assert torch.equal(out, aug.batch(x, torch.Generator(device="cuda").manual_seed(0)))


# random-value fill (lecture 000: "replace random regions with mean value or random values")


def _box_stats(out: torch.Tensor, fill_free: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample of an input that is ``fill_free`` everywhere: the erased mask (any channel
    changed) and every erased value."""
    changed = out != fill_free
    mask = changed.any(1)
    assert torch.equal(changed, mask[:, None].expand_as(changed))  # every channel of the box
    return mask, out[changed]


def test_random_erasing_random_fill_is_a_box_of_n01_noise_like_v2():
    h, w, n = 32, 32, 2000
    aug = AUGMENTS.build("random_erasing", p=1.0, value="random")
    x = torch.full((n, 3, h, w), 100.0)  # far from any N(0, 1) draw
    mask, values = _box_stats(aug.batch(x, gen(5)), 100.0)
    area = mask.sum((1, 2))
    rows, cols = mask.any(2).sum(1), mask.any(1).sum(1)
    assert torch.equal(area, rows * cols)  # one box per sample
    assert float(area.min()) / (h * w) > 0.02 * 0.6 and float(area.max()) / (h * w) < 0.33 * 1.15
    assert abs(float(values.mean())) < 0.01 and abs(float(values.std()) - 1) < 0.01
    assert float(values.abs().max()) > 3.5  # Gaussian tails, not a uniform fill
    assert abs(float((values.abs() < 1).float().mean()) - 0.6827) < 0.01
    # torchvision's own random fill on the same input: the same area and value distributions
    t = v2.RandomErasing(p=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3), value="random")
    torch.manual_seed(0)
    ref = torch.stack([t(x[0]) for _ in range(n)])
    ref_mask, ref_values = _box_stats(ref, 100.0)
    assert abs(float(area.float().mean() - ref_mask.sum((1, 2)).float().mean())) < 0.02 * h * w
    assert abs(float(values.std() - ref_values.std())) < 0.02
    assert abs(float(values.mean() - ref_values.mean())) < 0.02


def test_random_erasing_random_fill_draws_each_value_from_the_generator():
    aug = AUGMENTS.build("random_erasing", p=1.0, value="random")
    x = torch.full((64, 3, 16, 16), 100.0)
    out = aug.batch(x, gen(1))
    assert torch.equal(out, aug.batch(x, gen(1)))
    assert not torch.equal(out, aug.batch(x, gen(2)))
    _, values = _box_stats(out, 100.0)
    assert values.unique().numel() > 0.99 * values.numel()  # a draw per value and channel
    boxes = aug.sample(x, gen(1))  # the same boxes as the random fill's batch
    assert torch.equal(out != 100.0, aug.apply(x, *boxes, gen(3)) != 100.0)


def test_random_erasing_random_fill_cpu_path_is_v2_for_images_and_noise_for_sequences():
    aug = AUGMENTS.build("random_erasing", p=1.0, value="random")
    img = torch.full((3, 16, 16), 100.0)
    torch.manual_seed(0)
    out = aug.transform()(img)
    torch.manual_seed(0)
    ref = v2.RandomErasing(p=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3), value="random")(img)
    assert torch.equal(out, ref) and bool((out != 100.0).any())
    seq = torch.full((2, 40), 100.0)
    torch.manual_seed(1)
    filled = aug.transform()(seq)
    torch.manual_seed(1)
    assert torch.equal(filled, aug.batch(seq[None], None)[0])
    assert bool((filled != 100.0).any()) and float(filled[filled != 100.0].abs().max()) < 10


@pytest.mark.parametrize("value, expected", [("random", "random"), (0.5, 0.5), (2, 2.0)])
def test_random_erasing_value_is_a_number_or_random_in_a_recipe(value, expected):
    recipe = validate({"augment": [{"name": "random_erasing", "value": value}]})
    assert recipe.augment[0].value == expected


@pytest.mark.parametrize("value", ["rand", True, float("nan")])
def test_random_erasing_bad_value_names_the_key_and_both_choices(value):
    with pytest.raises(RecipeError) as err:
        validate({"augment": [{"name": "random_erasing", "value": value}]})
    assert str(err.value).count("\n") == 0
    assert "augment.0.value" in str(err.value)
    assert "expected a finite number or 'random'" in str(err.value)
