"""Every registered loss against an independent reference: values and gradients, for class-index
targets and for soft (probability) targets; plus the lecture tables (001: hinge vs cross-entropy,
004: label smoothing 0.91 / 0.01).
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainlab.catalog  # noqa: F401  (fills every registry)
from trainlab.nn.losses import LOSSES, to_probs

N, C = 8, 10


def _onehot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.zeros(len(y), num_classes, dtype=torch.float64).scatter_(1, y[:, None], 1.0)


def _lecture_smoothing(target: torch.Tensor, eps: float, num_classes: int) -> torch.Tensor:
    """Lecture 004: 1 - eps (C-1)/C on the true class, eps/C elsewhere; for soft targets torch's
    mixing (1 - eps) t + eps/C."""
    if target.is_floating_point():
        return (1.0 - eps) * target + eps / num_classes
    t = torch.full((len(target), num_classes), eps / num_classes, dtype=torch.float64)
    t[torch.arange(len(target)), target] = 1.0 - eps * (num_classes - 1) / num_classes
    return t


def _probs(target: torch.Tensor, num_classes: int, eps: float = 0.0) -> torch.Tensor:
    if not target.is_floating_point():
        target = _onehot(target, num_classes) if not eps else target
    return _lecture_smoothing(target, eps, num_classes) if eps else target


def _ref_cross_entropy(s, target, label_smoothing=0.0):
    t = _probs(target, s.shape[1], label_smoothing)
    return -(t * F.log_softmax(s, 1)).sum(1).mean()


def _ref_bce(s, target, label_smoothing=0.0):
    t = _probs(target, s.shape[1], label_smoothing)
    return -(t * F.logsigmoid(s) + (1 - t) * F.logsigmoid(-s)).mean()


def _ref_hinge(s, target, margin=1.0):
    y = target.argmax(1) if target.is_floating_point() else target
    total = s.new_zeros(())
    for i in range(s.shape[0]):
        for k in range(s.shape[1]):
            if k != int(y[i]):
                total = total + torch.clamp(s[i, k] - s[i, y[i]] + margin, min=0.0)
    return total / s.shape[0]


def _ref_l1(s, target):
    return (s - _probs(target, s.shape[1])).abs().mean()


def _ref_mse(s, target):
    return ((s - _probs(target, s.shape[1])) ** 2).mean()


def _ref_kl(s, target, label_smoothing=0.0):
    t = _probs(target, s.shape[1], label_smoothing)
    return (torch.xlogy(t, t) - t * F.log_softmax(s, 1)).sum() / s.shape[0]


# name -> (reference, parameter sets)
REFERENCES = {
    "cross_entropy": (_ref_cross_entropy, [{}, {"label_smoothing": 0.1}]),
    "bce": (_ref_bce, [{}, {"label_smoothing": 0.1}]),
    "hinge": (_ref_hinge, [{}, {"margin": 2.5}]),
    "l1": (_ref_l1, [{}]),
    "mse": (_ref_mse, [{}]),
    "kl": (_ref_kl, [{}, {"label_smoothing": 0.1}]),
}


def _data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(N, C, generator=gen, dtype=torch.float64) * 2.0
    y = torch.randint(0, C, (N,), generator=gen)
    soft = torch.softmax(torch.randn(N, C, generator=gen, dtype=torch.float64) * 2.0, 1)
    return scores, y, soft


def _value_and_grad(fn, scores, target):
    s = scores.clone().requires_grad_(True)
    value = fn(s, target)
    (grad,) = torch.autograd.grad(value, s)
    return value.detach(), grad


@pytest.mark.parametrize("target_kind", ["index", "soft"])
@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_matches_reference(name: str, target_kind: str) -> None:
    if name not in REFERENCES:
        pytest.fail(f"loss {name!r} is registered but has no reference in this test")
    reference, param_sets = REFERENCES[name]
    scores, y, soft = _data()
    target = y if target_kind == "index" else soft
    for params in param_sets:
        loss = LOSSES.build(name, **params)
        value, grad = _value_and_grad(loss, scores, target)
        ref_value, ref_grad = _value_and_grad(partial(reference, **params), scores, target)
        tag = f"{name} {params} {target_kind}"
        assert value.ndim == 0, tag
        torch.testing.assert_close(value, ref_value, msg=lambda m, tag=tag: f"{tag} value: {m}")
        torch.testing.assert_close(grad, ref_grad, msg=lambda m, tag=tag: f"{tag} grad: {m}")


@pytest.mark.parametrize("name", LOSSES.names())
def test_one_hot_soft_target_equals_index_target(name: str) -> None:
    scores, y, _ = _data(1)
    for params in REFERENCES.get(name, (None, [{}]))[1]:
        loss = LOSSES.build(name, **params)
        value, grad = _value_and_grad(loss, scores, y)
        value_soft, grad_soft = _value_and_grad(loss, scores, _onehot(y, C))
        torch.testing.assert_close(value, value_soft)
        torch.testing.assert_close(grad, grad_soft)


@pytest.mark.parametrize("name", LOSSES.names())
def test_float32_scores_accepted(name: str) -> None:
    scores, y, soft = _data(2)
    loss = LOSSES.build(name)
    for target in (y, soft.float()):
        out = loss(scores.float(), target)
        assert out.dtype == torch.float32 and torch.isfinite(out)


# ---------------------------------------------------------------------------------------------
# cross-entropy and label smoothing (lecture 004)


def test_cross_entropy_equals_torch_and_gradient_is_softmax_minus_target() -> None:
    scores, y, soft = _data(3)
    for target in (y, soft):
        value, grad = _value_and_grad(LOSSES.build("cross_entropy"), scores, target)
        torch.testing.assert_close(value, F.cross_entropy(scores, target))
        t = _probs(target, C)
        torch.testing.assert_close(grad, (torch.softmax(scores, 1) - t) / N)


def test_label_smoothing_target_is_lectures_091_001() -> None:
    y = torch.tensor([2, 0, 9])
    t = to_probs(y, 10, smoothing=0.1)
    assert t.shape == (3, 10)
    torch.testing.assert_close(t[0, 2], torch.tensor(0.91))
    torch.testing.assert_close(t[0, 0], torch.tensor(0.01))
    expected = torch.full((3, 10), 0.01)
    expected[torch.arange(3), y] = 0.91
    torch.testing.assert_close(t, expected)
    torch.testing.assert_close(t.sum(1), torch.ones(3))


def test_to_probs_without_smoothing_and_soft_targets() -> None:
    y = torch.tensor([1, 3])
    torch.testing.assert_close(to_probs(y, 4), torch.eye(4)[[1, 3]])
    soft = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    torch.testing.assert_close(to_probs(soft, 4), soft)
    torch.testing.assert_close(to_probs(soft, 4, 0.2), soft * 0.8 + 0.05)


def test_smoothed_cross_entropy_is_cross_entropy_with_smoothed_targets() -> None:
    scores, y, _ = _data(4)
    eps = 0.1
    value = LOSSES.build("cross_entropy", label_smoothing=eps)(scores, y)
    t = to_probs(y, C, eps).double()
    torch.testing.assert_close(value, -(t * F.log_softmax(scores, 1)).sum(1).mean())
    plain = LOSSES.build("cross_entropy")(scores, y)
    assert not torch.allclose(value, plain)


# ---------------------------------------------------------------------------------------------
# hinge vs cross-entropy (lecture 001)

TABLE = [  # scores, hinge, cross-entropy (label 0)
    ([5.0, -3.0, 2.0], 0.0, 0.05),
    ([5.0, 10.0, 10.0], 12.0, 5.70),
    ([5.0, -20.0, -20.0], 0.0, 2e-11),
]


@pytest.mark.parametrize(("row", "hinge_value", "ce_value"), TABLE)
def test_lecture_001_table(row, hinge_value, ce_value) -> None:
    s = torch.tensor([row], dtype=torch.float64)
    y = torch.tensor([0])
    hinge = LOSSES.build("hinge")(s, y).item()
    ce = LOSSES.build("cross_entropy")(s, y).item()
    assert hinge == pytest.approx(hinge_value, abs=1e-12)
    if ce_value > 1e-3:
        assert round(ce, 2) == pytest.approx(ce_value)
    else:
        exact = math.log1p(2 * math.exp(-25.0))  # 2.8e-11: the slide rounds to 2e-11
        assert ce == pytest.approx(exact, rel=1e-4)
        assert 1e-11 < ce < 5e-11


def test_hinge_is_multimargin_times_classes() -> None:
    scores, y, _ = _data(5)
    for margin in (1.0, 0.5):
        ours = LOSSES.build("hinge", margin=margin)(scores, y)
        torch_loss = nn.MultiMarginLoss(margin=margin)(scores, y) * C
        torch.testing.assert_close(ours, torch_loss)


# ---------------------------------------------------------------------------------------------
# binary cross-entropy, l1/mse, KL


def test_bce_is_torch_bce_with_logits_on_one_hot() -> None:
    scores, y, soft = _data(6)
    bce = LOSSES.build("bce")
    torch.testing.assert_close(
        bce(scores, y), F.binary_cross_entropy_with_logits(scores, _onehot(y, C))
    )
    torch.testing.assert_close(bce(scores, soft), F.binary_cross_entropy_with_logits(scores, soft))


def test_bce_single_logit_binary_case() -> None:
    gen = torch.Generator().manual_seed(7)
    s = torch.randn(N, 1, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (N,), generator=gen)
    bce = LOSSES.build("bce")
    expected = F.binary_cross_entropy_with_logits(s[:, 0], y.double())
    torch.testing.assert_close(bce(s, y), expected)
    # soft two-class targets: the logit is the probability of class 1
    p1 = torch.rand(N, generator=gen, dtype=torch.float64)
    soft = torch.stack([1 - p1, p1], 1)
    torch.testing.assert_close(bce(s, soft), F.binary_cross_entropy_with_logits(s[:, 0], p1))
    # smoothing for two classes: 1 - eps/2 and eps/2
    smoothed = LOSSES.build("bce", label_smoothing=0.2)(s, y)
    t = y.double() * 0.8 + 0.1
    torch.testing.assert_close(smoothed, F.binary_cross_entropy_with_logits(s[:, 0], t))


@pytest.mark.parametrize(("name", "fn"), [("l1", F.l1_loss), ("mse", F.mse_loss)])
def test_regression_losses_on_one_hot(name: str, fn) -> None:
    scores, y, soft = _data(8)
    loss = LOSSES.build(name)
    torch.testing.assert_close(loss(scores, y), fn(scores, _onehot(y, C)))
    torch.testing.assert_close(loss(scores, soft), fn(scores, soft))


def test_kl_is_torch_kl_div_and_cross_entropy_minus_entropy() -> None:
    scores, y, soft = _data(9)
    kl = LOSSES.build("kl")
    torch.testing.assert_close(
        kl(scores, soft), F.kl_div(F.log_softmax(scores, 1), soft, reduction="batchmean")
    )
    entropy = -(soft * soft.log()).sum(1).mean()
    ce = LOSSES.build("cross_entropy")(scores, soft)
    torch.testing.assert_close(kl(scores, soft), ce - entropy)
    # one-hot targets have zero entropy: KL equals cross-entropy
    torch.testing.assert_close(kl(scores, y), F.cross_entropy(scores, y))
    # smoothed: KL = smoothed CE - entropy of the smoothed target (lecture 004)
    eps = 0.1
    t = _lecture_smoothing(y, eps, C)
    smoothed_ce = LOSSES.build("cross_entropy", label_smoothing=eps)(scores, y)
    torch.testing.assert_close(
        LOSSES.build("kl", label_smoothing=eps)(scores, y),
        smoothed_ce + (t * t.log()).sum(1).mean(),
    )
