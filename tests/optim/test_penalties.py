"""L1, L2 and elastic-net penalties: values and gradients against the lecture's R(W)."""

from __future__ import annotations

import pytest
import torch

from trainlab.optim.penalties import weight_penalty


def test_penalty_values_and_gradients_match_the_formula():
    torch.manual_seed(0)
    params = [torch.randn(4, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    l1, l2 = 0.3, 0.05
    total = weight_penalty(params, l1, l2)
    expected = sum(l1 * p.abs().sum() + 0.5 * l2 * p.pow(2).sum() for p in params)
    assert torch.allclose(total, expected)
    grads = torch.autograd.grad(total, params)
    for p, g in zip(params, grads, strict=True):
        assert torch.allclose(g, l1 * p.sign() + l2 * p)


def test_only_l1_only_l2_and_nothing():
    p = [torch.tensor([1.0, -2.0, 3.0])]
    assert weight_penalty(p, 1.0, 0.0).item() == 6.0
    assert weight_penalty(p, 0.0, 2.0).item() == pytest.approx(14.0)
    assert weight_penalty(p, 0.0, 0.0).item() == 0.0
    assert weight_penalty([], 1.0, 1.0).item() == 0.0
