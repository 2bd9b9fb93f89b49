"""Augmentations: per-sample independence on the device path, same meaning on the v2 path."""

from __future__ import annotations

import pytest
import torch

from trainlab.data.augment import AUGMENTS, Pipeline


def _batch(n=256, c=3, h=8, w=8):
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)


def test_hflip_flips_about_half_the_samples_independently():
    x = _batch()
    out = AUGMENTS.build("hflip", p=0.5).batch(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert bool((flipped | kept).all())
    assert 90 < int(flipped.sum()) < 166  # Binomial(256, 0.5): per-sample, not per-batch


def test_random_crop_translates_each_sample_by_its_own_offset():
    x = torch.randn(512, 1, 6, 6)
    out = AUGMENTS.build("random_crop", padding=2).batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    shifts = set()
    padded = torch.nn.functional.pad(x, [2, 2, 2, 2])
    for i in range(len(x)):
        for dy in range(5):
            for dx in range(5):
                if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6]):
                    shifts.add((dy, dx))
                    break
            else:
                continue
            break
        else:
            pytest.fail(f"sample {i} is not a crop of its padded input")
    assert len(shifts) == 25  # every offset occurs: the parameters are drawn per sample


def test_random_crop_on_sequences():
    x = torch.randn(64, 2, 40)
    out = AUGMENTS.build("random_crop", padding=3).batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_every_augment_has_a_per_sample_v2_transform_that_keeps_the_shape(name):
    aug = AUGMENTS.get(name).factory()
    image = torch.rand(3, 8, 8)
    assert aug.transform()(image).shape == image.shape
    assert aug.batch(image[None], torch.Generator()).shape == (1, 3, 8, 8)


def test_empty_pipeline_is_falsy_and_identity():
    assert not Pipeline([])
    x = _batch(4)
    assert torch.equal(Pipeline([]).batch(x, torch.Generator()), x)


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_every_per_sample_transform_pickles_for_spawned_workers(name):
    import pickle

    transform = AUGMENTS.get(name).factory().transform()
    again = pickle.loads(pickle.dumps(transform))
    image = torch.rand(3, 8, 8)
    assert again(image).shape == image.shape
