"""Mixup and CutMix against the lecture's formulas; per-sample parameters; soft labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainlab.data.augment import AUGMENTS, Pipeline
from trainlab.data.augment.mixing import beta_per_sample, box_mask, cutmix_boxes
from trainlab.nn.losses import LOSSES


def _onehot(y: torch.Tensor, c: int = 10) -> torch.Tensor:
    return F.one_hot(y, c).float()


def _distinct_images(n: int = 64, h: int = 12, w: int = 10) -> torch.Tensor:
    """Each image is constant at its own index + 1, so every pixel tells where it came from."""
    return (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1).expand(n, 3, h, w).clone()


def test_mixup_interpolates_inputs_and_labels_with_the_same_lambda_per_sample():
    x, y = _distinct_images(), torch.arange(64) % 10
    mixed, soft = AUGMENTS.build("mixup", alpha=0.4).mix(
        x, _onehot(y), torch.Generator().manual_seed(0)
    )
    assert torch.allclose(soft.sum(1), torch.ones(64))  # label weights sum to 1
    lambdas = []
    for i in range(64):
        values = mixed[i].unique()
        assert len(values) == 1  # a blend of two constant images is constant
        # x = lam * (i + 1) + (1 - lam) * (j + 1) with j the partner; soft puts lam on y_i
        lam = soft[i, y[i]].item() if soft[i].count_nonzero() > 1 else 1.0
        lambdas.append(lam)
    assert np.std(lambdas) > 0.05  # lambda drawn per sample, not once per batch


def test_mixup_input_and_label_weights_agree():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(32, 1, 20)
    y = _onehot(torch.arange(32), 32)  # every sample its own class: the label shows the partner
    mixed, soft = AUGMENTS.build("mixup", alpha=1.0).mix(x, y, gen)
    for i in range(32):
        weights = soft[i]
        expected = (weights[:, None, None] * x).sum(0)
        assert torch.allclose(mixed[i], expected, atol=1e-5)


def test_beta_draws_match_beta_alpha_alpha():
    lam = beta_per_sample(20000, 0.4, np.random.default_rng(0), torch.device("cpu"))
    a = 0.4
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert abs(lam.var().item() - 1 / (4 * (2 * a + 1))) < 0.005  # Var Beta(a, a)
    again = beta_per_sample(20000, 0.4, np.random.default_rng(0), torch.device("cpu"))
    assert torch.equal(lam, again)


def test_cutmix_area_ratio_is_one_minus_lambda_within_one_pixel_row():
    h, w = 32, 32
    lam = torch.linspace(0.02, 0.98, 200)
    low, high = cutmix_boxes((h, w), lam, torch.Generator().manual_seed(0))
    area = (high - low).prod(1).float() / (h * w)
    unclipped = (
        (high - low).float() == torch.round(torch.tensor([h, w]) * (1 - lam)[:, None].sqrt())
    ).all(1)
    assert unclipped.sum() > 20
    err = (area - (1 - lam)).abs()[unclipped]
    assert float(err.max()) <= 1 / h  # one pixel row of W pixels, over H*W


def test_cutmix_pastes_one_box_and_weights_labels_by_the_area_actually_pasted():
    x, y = _distinct_images(256, 16, 16), torch.arange(256) % 10
    mixed, soft = AUGMENTS.build("cutmix", alpha=1.0).mix(
        x, _onehot(y), torch.Generator().manual_seed(1)
    )
    assert torch.allclose(soft.sum(1), torch.ones(256))
    clipped_seen = 0
    for i in range(256):
        own = mixed[i] == i + 1
        pasted = ~own
        frac = pasted.float().mean().item()
        if pasted.any():
            rows, cols = pasted[0].nonzero(as_tuple=True)
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box.item() == pasted[0].sum().item()  # one axis-aligned rectangle
            partner = int(mixed[i][pasted][0].item()) - 1
            assert torch.all(mixed[i][pasted] == partner + 1)
            if y[partner] != y[i]:
                assert soft[i, y[i]].item() == pytest.approx(1 - frac, abs=1e-6)
            clipped_seen += int(
                rows.min() == 0 or cols.min() == 0 or rows.max() == 15 or cols.max() == 15
            )
    assert clipped_seen > 10  # border boxes occur, and their label weight is the clipped area


def test_box_mask_on_sequences_is_a_segment():
    low, high = torch.tensor([[2], [0]]), torch.tensor([[5], [3]])
    mask = box_mask((8,), low, high)
    assert mask.tolist() == [
        [False, False, True, True, True, False, False, False],
        [True] * 3 + [False] * 5,
    ]


def test_p_leaves_a_share_of_samples_unmixed():
    x, y = _distinct_images(400, 4, 4), torch.arange(400) % 10
    _, soft = AUGMENTS.build("mixup", alpha=1.0, p=0.3).mix(
        x, _onehot(y), torch.Generator().manual_seed(0)
    )
    unmixed = (soft.max(1).values == 1).float().mean().item()
    assert 0.6 < unmixed < 0.8


def test_pipeline_picks_one_mixer_per_batch():
    pipe = Pipeline([AUGMENTS.build("mixup"), AUGMENTS.build("cutmix")], num_classes=10)
    x, y = _distinct_images(32, 8, 8), torch.arange(32) % 10
    kinds = set()
    for seed in range(20):
        mixed, soft = pipe.mix(x, y, torch.Generator().manual_seed(seed))
        assert soft.shape == (32, 10)
        n_values = max(len(m.unique()) for m in mixed)
        kinds.add("cutmix" if n_values == 2 and torch.isin(mixed, x).all() else "mixup")
    assert kinds == {"mixup", "cutmix"}


def test_pipeline_without_mixer_keeps_class_indices():
    x, y = torch.zeros(4, 1, 3, 3), torch.arange(4)
    assert Pipeline([AUGMENTS.build("hflip")], 4).mix(x, y, torch.Generator())[1] is y


def test_label_smoothing_composes_with_mixing_in_either_order():
    """(1-eps) * mix(onehots) + eps/C == mix((1-eps) * onehot + eps/C): one definition."""
    c, eps = 10, 0.1
    y = torch.arange(16) % c
    x = torch.randn(16, 1, 4, 4)
    mixed, soft = AUGMENTS.build("mixup").mix(x, _onehot(y, c), torch.Generator().manual_seed(0))
    smoothed_onehot = _onehot(y, c) * (1 - eps) + eps / c
    _, soft_of_smoothed = AUGMENTS.build("mixup").mix(
        x, smoothed_onehot, torch.Generator().manual_seed(0)
    )
    assert torch.allclose(soft * (1 - eps) + eps / c, soft_of_smoothed, atol=1e-6)
    scores = torch.randn(16, c, requires_grad=True)
    loss = LOSSES.build("cross_entropy", label_smoothing=eps)(scores, soft)
    manual = -(soft_of_smoothed * scores.log_softmax(1)).sum(1).mean()
    assert torch.allclose(loss, manual, atol=1e-6)
    (g1,) = torch.autograd.grad(loss, scores)
    (g2,) = torch.autograd.grad(manual, scores)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_cutmix_on_sequences_pastes_a_segment_of_one_minus_lambda():
    length = 40
    lam = torch.linspace(0.02, 0.98, 200)
    low, high = cutmix_boxes((length,), lam, torch.Generator().manual_seed(0))
    share = (high - low)[:, 0].float() / length
    unclipped = (high - low)[:, 0] == torch.round(length * (1 - lam))
    assert unclipped.sum() > 50
    assert float((share - (1 - lam)).abs()[unclipped].max()) <= 0.5 / length  # rounding only
