"""Geometric augmentations: same meaning as torchvision v2 on both paths, parameters per sample."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from tests.data.augment_util import gen, torch_calls
from trainlab.data.augment import AUGMENTS, Pipeline
from trainlab.data.augment.base import affine_batch
from trainlab.data.augment.geometric import MultiScale, affine_theta, resized_crop_batch
from trainlab.errors import RecipeError

NAMES = ["random_resized_crop", "multiscale", "rotate", "translate", "shear", "scale", "affine"]
AFFINES = ["rotate", "translate", "shear", "scale", "affine"]
BILINEAR = v2.InterpolationMode.BILINEAR


def smooth(c: int = 3, h: int = 24, w: int = 40) -> torch.Tensor:
    """A smooth, asymmetric (C, H, W) image (bilinear interpolation is near exact on it)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([torch.sin(3 * xx + 2 * yy), torch.cos(4 * yy - xx), xx * yy + 0.5])[:c]


def one(v: float) -> torch.Tensor:
    return torch.tensor([float(v)])


# -- the batched warps realise torchvision's functional ops exactly ------------------------------


@pytest.mark.parametrize(
    ("angle", "translate", "scale", "shear"),
    [
        (20.0, (3, -2), 1.1, 0.0),
        (0.0, (0, 0), 1.0, 15.0),
        (-30.0, (0, 0), 0.9, -8.0),
        (10.0, (5, 4), 1.05, 12.0),
    ],
)
def test_affine_theta_gives_v2_functional_affine(angle, translate, scale, shear):
    img = smooth()  # 24 x 40: a non-square image checks the aspect handling too
    ref = TF.affine(img, angle, list(translate), scale, [shear, 0.0], interpolation=BILINEAR)
    theta = affine_theta(
        one(angle), one(translate[0]), one(translate[1]), one(scale), one(shear), (24, 40)
    )
    out = affine_batch(img[None], theta)[0]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)  # zero fill: equal at borders too


def test_positive_angle_turns_clockwise_as_displayed_like_v2_affine():
    img = torch.zeros(1, 21, 21)
    img[0, 10, 15:] = 1.0  # a bar pointing right from the centre
    identity = {"tx": one(0), "ty": one(0), "scale": one(1), "shear": one(0)}
    out = AUGMENTS.build("rotate").apply(img[None], {"angle": one(90), **identity})[0]
    assert out[0, 15:, 10].mean() > 0.9  # now it points down (row 0 is the top)
    assert out[0, 10, 15:].max() < 0.1
    shifted = AUGMENTS.build("translate").apply(
        img[None], {**identity, "angle": one(0), "tx": one(-2), "ty": one(3)}
    )[0]
    assert torch.equal(shifted[0, 13, 13:19], torch.ones(6))  # 2 left, 3 down


@pytest.mark.parametrize(
    ("top", "left", "height", "width"),
    [(2, 3, 10, 20), (0, 0, 24, 40), (5, 0, 19, 13), (23, 39, 1, 1)],
)
def test_resized_crop_batch_gives_v2_functional_resized_crop(top, left, height, width):
    img = smooth()
    ref = TF.resized_crop(img, top, left, height, width, [24, 40], antialias=True)
    out = resized_crop_batch(img[None], one(top), one(left), one(height), one(width))[0]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("rh", "rw", "top", "left"), [(30, 50, 3, 7), (24, 40, 0, 0), (36, 60, 12, 20)]
)
def test_multiscale_crop_is_resize_then_crop(rh, rw, top, left):
    img = smooth()
    ref = TF.resize(img, [rh, rw], antialias=True)[..., top : top + 24, left : left + 40]
    out = MultiScale((24, 40)).apply(img[None], one(rh), one(rw), one(top), one(left))[0]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


# -- the per-sample path: v2 with the same ranges, the same image for the same parameters -------


@pytest.mark.parametrize(
    ("name", "degrees", "translate", "scale", "shear"),
    [
        ("rotate", [-15.0, 15.0], None, None, None),
        ("translate", [0.0, 0.0], (0.1, 0.1), None, None),
        ("shear", [0.0, 0.0], None, None, [-10.0, 10.0]),
        ("scale", [0.0, 0.0], None, (0.9, 1.1), None),
        ("affine", [-15.0, 15.0], (0.1, 0.1), (0.9, 1.1), [-10.0, 10.0]),
    ],
)
def test_affine_cpu_path_is_v2_random_affine_with_the_same_ranges(
    name, degrees, translate, scale, shear
):
    aug = AUGMENTS.build(name)
    t = aug.transform()
    assert isinstance(t, v2.RandomAffine) and t.interpolation == BILINEAR
    assert list(t.degrees) == degrees and t.translate == translate and t.scale == scale
    assert (list(t.shear) if t.shear is not None else None) == shear
    img = smooth()
    for seed in range(3):  # v2's own draw, realised by the batched warp: the same image
        torch.manual_seed(seed)
        p = t.make_params([img])
        cpu = t.transform(img, p)
        params = {
            "angle": one(p["angle"]),
            "tx": one(p["translate"][0]),
            "ty": one(p["translate"][1]),
            "scale": one(p["scale"]),
            "shear": one(p["shear"][0]),
        }
        assert p["shear"][1] == 0.0
        torch.testing.assert_close(aug.apply(img[None], params)[0], cpu, atol=1e-4, rtol=0)
        assert cpu.shape == img.shape and cpu.dtype == img.dtype


def test_random_resized_crop_cpu_path_is_v2_and_keeps_shape():
    t = AUGMENTS.build("random_resized_crop", scale=(0.5, 1.0)).transform()
    img = smooth()
    out = t(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    torch.manual_seed(0)
    ref = v2.RandomResizedCrop((24, 40), scale=(0.5, 1.0), antialias=True)(img)
    torch.manual_seed(0)
    torch.testing.assert_close(t(img), ref)


def test_multiscale_cpu_path_draws_like_the_batch_and_resizes_with_v2():
    aug = AUGMENTS.build("multiscale", short_side=(24, 36))
    img = smooth()
    torch.manual_seed(5)
    cpu = aug.transform()(img)
    torch.manual_seed(5)
    params = aug.sample(img[None], None)  # the same draws from the global RNG
    assert cpu.shape == img.shape and cpu.dtype == img.dtype
    torch.testing.assert_close(cpu, aug.apply(img[None], *params)[0], atol=1e-4, rtol=0)


# -- per-sample parameters with the configured distributions -------------------------------------


def _check_uniform(values: torch.Tensor, low: float, high: float) -> None:
    assert float(values.min()) >= low - 1e-6 and float(values.max()) <= high + 1e-6
    width = high - low
    assert float(values.min()) < low + 0.05 * width and float(values.max()) > high - 0.05 * width
    assert abs(float(values.mean()) - (low + high) / 2) < 0.05 * width
    assert abs(float(values.std()) - width / math.sqrt(12)) < 0.05 * width


def test_affine_draws_each_parameter_per_sample_in_its_range():
    x = torch.zeros(4000, 1, 20, 30)
    p = AUGMENTS.build("affine", degrees=15, translate=0.1, scale=(0.8, 1.2), shear=10).sample(
        x, gen()
    )
    _check_uniform(p["angle"], -15, 15)
    _check_uniform(p["scale"], 0.8, 1.2)
    _check_uniform(p["shear"], -10, 10)
    assert set(p["tx"].tolist()) == set(range(-3, 4)) and set(p["ty"].tolist()) == set(range(-2, 3))
    corr = torch.corrcoef(torch.stack([p["angle"], p["scale"], p["shear"], p["tx"]]))
    assert float((corr - torch.eye(4)).abs().max()) < 0.1  # independent draws


@pytest.mark.parametrize(
    ("name", "key"),
    [("rotate", "angle"), ("shear", "shear"), ("scale", "scale"), ("translate", "tx")],
)
def test_single_affines_draw_only_their_own_parameter(name, key):
    p = AUGMENTS.build(name).sample(torch.zeros(500, 1, 20, 20), gen())
    identity = {"angle": 0.0, "tx": 0.0, "ty": 0.0, "scale": 1.0, "shear": 0.0}
    for k, v in p.items():
        assert (v.unique().numel() > 1) == (k == key or (name == "translate" and k == "ty"))
        if v.unique().numel() == 1:
            assert float(v[0]) == identity[k]


def test_random_resized_crop_boxes_follow_the_scale_and_ratio_ranges():
    h, w = 32, 32
    aug = AUGMENTS.build("random_resized_crop", scale=(0.2, 0.8), ratio=(0.5, 2.0))
    top, left, ch, cw = aug.sample(torch.zeros(4000, 1, h, w), gen())
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + ch <= h).all() and (left + cw <= w).all())
    area = ch * cw / (h * w)
    # sides are rounded to whole pixels: allow half a pixel on each side
    assert float(area.min()) > 0.2 * (1 - 1 / 6) and float(area.max()) < 0.8 * (1 + 1 / 6)
    aspect = cw / ch
    assert float(aspect.min()) > 0.5 * 0.85 and float(aspect.max()) < 2.0 / 0.85
    assert top.unique().numel() > 10 and left.unique().numel() > 10  # offsets per sample
    # the same distribution as v2's sampler
    t = v2.RandomResizedCrop((h, w), scale=(0.2, 0.8), ratio=(0.5, 2.0))
    torch.manual_seed(0)
    ref = torch.tensor(
        [
            [p["height"] * p["width"] / (h * w), p["width"] / p["height"]]
            for p in (t.make_params([torch.zeros(1, h, w)]) for _ in range(2000))
        ]
    )
    assert abs(float(area.mean()) - float(ref[:, 0].mean())) < 0.02
    assert abs(float(aspect.log().mean()) - float(ref[:, 1].log().mean())) < 0.05


def test_random_resized_crop_falls_back_to_v2s_central_crop():
    aug = AUGMENTS.build("random_resized_crop", scale=(1.0, 1.0), ratio=(2.0, 3.0))  # never fits
    box = [v[0].item() for v in aug.sample(torch.zeros(3, 1, 16, 16), gen())]
    ref = v2.RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(2.0, 3.0)).make_params(
        [torch.zeros(1, 16, 16)]
    )
    assert box == [ref["top"], ref["left"], ref["height"], ref["width"]]


def test_multiscale_draws_the_short_side_and_offset_per_sample():
    x = torch.zeros(3000, 1, 20, 30)  # short side 20
    rh, rw, top, left = AUGMENTS.build("multiscale", short_side=(20, 30)).sample(x, gen())
    s = rh  # the short side after resizing, rounded
    assert float(s.min()) == 20 and float(s.max()) == 30
    assert set(s.tolist()) == set(range(20, 31))
    torch.testing.assert_close(rw / 30, rh / 20, atol=0.5 / 20 + 0.5 / 30, rtol=0)  # isotropic
    assert bool((top >= 0).all() and (top <= rh - 20).all() and (left <= rw - 30).all())
    big = s == 30
    assert set(top[big].tolist()) == set(range(11))  # every offset occurs


def test_multiscale_refuses_a_short_side_below_the_images():
    aug = AUGMENTS.build("multiscale", short_side=(24, 40))
    with pytest.raises(RecipeError, match="short_side"):
        aug.fit(torch.zeros(4, 3, 32, 32))
    aug.fit(torch.zeros(4, 3, 24, 30))  # fits


@pytest.mark.parametrize("name", NAMES)
def test_identical_images_get_different_transforms_and_seeds_reproduce(name):
    x = smooth(1, 16, 16)[None].repeat(32, 1, 1, 1)
    aug = AUGMENTS.build(name, **({"short_side": (16, 24)} if name == "multiscale" else {}))
    out = aug.batch(x, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    distinct = torch.unique(out.flatten(1), dim=0)
    # per-sample parameters, not one per batch (whole-pixel sizes and shifts repeat a little)
    assert len(distinct) >= {"translate": 10, "multiscale": 20}.get(name, 30)
    assert torch.equal(out, aug.batch(x, gen(1)))
    assert not torch.equal(out, aug.batch(x, gen(2)))


@pytest.mark.parametrize("name", NAMES)
def test_device_path_has_no_python_loop_over_samples(name):
    aug = AUGMENTS.build(name, **({"short_side": (16, 24)} if name == "multiscale" else {}))
    small, large = torch.rand(2, 3, 16, 16), torch.rand(64, 3, 16, 16)
    assert torch_calls(lambda: aug.batch(small, gen())) == torch_calls(
        lambda: aug.batch(large, gen())
    )


@pytest.mark.parametrize("name", NAMES)
def test_image_only_augments_are_refused_on_sequences(name):
    aug = AUGMENTS.build(name)
    assert aug.dims == (2,)
    Pipeline([aug]).check((3, 16, 16))
    with pytest.raises(RecipeError, match="images"):
        Pipeline([aug]).check((1, 40))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_runs_on_cuda_with_a_cuda_generator(name):
    aug = AUGMENTS.build(name, **({"short_side": (16, 24)} if name == "multiscale" else {}))
    x = smooth(3, 16, 16)[None].repeat(8, 1, 1, 1)
    g = torch.Generator(device="cuda").manual_seed(0)
    out = aug.batch(x.cuda(), g)
    assert out.device.type == "cuda" and out.shape == x.shape
    torch.testing.assert_close(
        out, aug.batch(x.cuda(), torch.Generator(device="cuda").manual_seed(0))
    )
