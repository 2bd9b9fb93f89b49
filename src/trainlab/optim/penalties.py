"""Weight penalties added to the loss (lecture 002's R(W)): L2, L1 and their sum, elastic net.

    loss += l1 * sum |w|  +  l2 / 2 * sum w^2

over the weights that are decayed (not biases or normalisation parameters unless
``regularization.decay_bias_and_norm``). Both coefficients set is the elastic net; the lecture's
``sum beta w^2 + |w|`` is ``l1: 1, l2: 2 beta`` scaled by lambda. Decoupled weight decay
(``optimizer.weight_decay``) is a different thing and lives in the optimiser.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["weight_penalty"]


def weight_penalty(params: Sequence[torch.Tensor], l1: float, l2: float) -> torch.Tensor:
    """l1 * sum|w| + l2/2 * sum w^2 over ``params``, with one fused norm kernel per term
    (``torch._foreach_norm``) instead of a Python sum over tensors."""
    total = torch.zeros((), device=params[0].device) if params else torch.zeros(())
    if not params:
        return total
    if l1:
        total = total + l1 * torch.stack(torch._foreach_norm(params, 1)).sum()
    if l2:
        total = total + 0.5 * l2 * torch.stack(torch._foreach_norm(params, 2)).pow(2).sum()
    return total
