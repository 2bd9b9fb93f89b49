"""Model-level regularisers of lecture 000/002/004 that torch does not ship as layers.

"Training: add some randomness; testing: marginalise over it." Each module here is random in
``train()`` mode and deterministic in ``eval()`` mode:

- DropConnect (Wan et al. 2013): :class:`DropConnectLinear`, :class:`DropConnectConv1d`,
  :class:`DropConnectConv2d` zero each *weight* with probability ``p``.
- Fractional max pooling (Graham 2014): :class:`FractionalMaxPool`, torch's kernel with a fixed
  pooling grid at eval and a 1-D form that torch lacks.
- Stochastic depth (Huang et al. 2016): :func:`survival_probabilities` gives the lecture's linear
  decay; :class:`BranchDrop` is torchvision's ``StochasticDepth(p, "row")`` (the same draws, tested
  against it) plus a forward-hook method, so it can also drop the residual branch of
  torchvision's own blocks. Written here rather than subclassed because importing
  ``torchvision.ops`` imports ``torch._dynamo`` (1.5 s): every ``trainlab`` command paid it,
  where only those that build a torch optimiser need it (``add_param_group`` imports it).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BranchDrop",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "DropConnectLinear",
    "FractionalMaxPool",
    "is_stochastic",
    "noise_off",
    "survival_probabilities",
]


class _DropConnect:
    """Mixin: the layer's weight with each entry zeroed with probability ``p`` (training only).

    The kept weights are scaled by 1 / (1 - p) (inverted, like torch's dropout), so the expected
    output equals the plain layer's and eval needs no rescaling: eval *is* the plain layer. The
    bias is not dropped (the lecture drops connections between neurons; a bias connects none).

    One mask per forward call, shared by the whole mini-batch. Wan et al. draw one mask per
    example, but then every example needs its own masked copy of the weight (a batched matmul
    over N weight copies: N times the memory and no cuBLAS GEMM). A mask per mini-batch is what
    practical implementations (e.g. AWD-LSTM's WeightDrop) use; it is still an unbiased
    estimate of the same ensemble. ``F.dropout`` on the weight draws the mask from torch's RNG,
    so a seed reproduces it, and back-propagates through the mask.

    Subclasses of the plain layers, with no extra parameter or buffer: state_dict keys are the
    plain layer's, so checkpoints, inits and ``isinstance(m, nn.Linear)`` all keep working.
    """

    p: float
    weight: torch.Tensor
    training: bool

    def __init__(self, *args, p: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # the plain layer's constructor (next in the MRO)
        self.p = _check_p(p)

    def masked_weight(self) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return self.weight
        return F.dropout(self.weight, self.p, training=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropconnect={self.p}"  # type: ignore[misc]


class DropConnectLinear(_DropConnect, nn.Linear):
    """``nn.Linear`` with DropConnect on its weight (see :class:`_DropConnect`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class _DropConnectConv(_DropConnect):
    """The conv forward of torch's own layers, with the masked weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)  # type: ignore[attr-defined]


class DropConnectConv1d(_DropConnectConv, nn.Conv1d):
    """``nn.Conv1d`` with DropConnect on its weight (see :class:`_DropConnect`)."""


class DropConnectConv2d(_DropConnectConv, nn.Conv2d):
    """``nn.Conv2d`` with DropConnect on its weight (see :class:`_DropConnect`)."""


def _check_p(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropconnect probability must be in [0, 1), got {p}")
    return float(p)


class FractionalMaxPool(nn.Module):
    """Fractional max pooling (Graham 2014) over 1-D (N, C, L) or 2-D (N, C, H, W) maps.

    Each spatial size shrinks to ``int(size * ratio)`` with 2-wide windows at pseudo-random
    positions, so the pooling regions differ between forward calls (torch draws one offset per
    example and channel from its global RNG: a seed reproduces them). The lecture's test time
    "averages over different samples"; here ``eval()`` uses one fixed grid (offset 0.5 for every
    map), so evaluation is deterministic; keep the module in train mode to average samples.

    torch has no FractionalMaxPool1d: a sequence is pooled as a (N, C, 1, L) map with a 1 x 2
    window, which draws its positions along L only.
    """

    def __init__(self, ratio: float, dims: int) -> None:
        super().__init__()
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"fractional pooling ratio must be in (0, 1), got {ratio}")
        if dims not in (1, 2):
            raise ValueError(f"fractional pooling needs 1-D or 2-D maps, got dims={dims}")
        self.ratio, self.dims = ratio, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.unsqueeze(2) if self.dims == 1 else x
        height, width = x2.shape[-2:]
        out_h = 1 if self.dims == 1 else int(height * self.ratio)
        kernel = (1, 2) if self.dims == 1 else (2, 2)
        samples = None
        if not self.training:
            samples = torch.full((x2.shape[0], x2.shape[1], 2), 0.5, dtype=x.dtype, device=x.device)
        out = F.fractional_max_pool2d(
            x2, kernel, output_size=(out_h, int(width * self.ratio)), _random_samples=samples
        )
        return out.squeeze(2) if self.dims == 1 else out

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:.4g}, dims={self.dims}"


def survival_probabilities(num_blocks: int, last_drop: float) -> list[float]:
    """The lecture's linear decay p_l = 1 - l/L (1 - p_L) for blocks l = 1..L.

    ``last_drop`` is 1 - p_L, the drop probability of the last (deepest) block; the first block
    survives with probability 1 - (1 - p_L) / L, and the input (l = 0) always survives.
    """
    if not 0.0 <= last_drop <= 1.0:
        raise ValueError(f"stochastic depth drop probability must be in [0, 1], got {last_drop}")
    return [1.0 - block / num_blocks * last_drop for block in range(1, num_blocks + 1)]


class BranchDrop(nn.Module):
    """torchvision's ``StochasticDepth(p, "row")``: drops a residual branch per example.

    In training the branch of each example is zeroed with probability ``p`` and otherwise scaled
    by 1 / (1 - p), so at eval the network is the unmodified one (the paper instead scales by
    p_l at test time; the two are equivalent in expectation). :meth:`hook` applies it as a
    forward hook on a branch's last layer: torchvision's blocks add the shortcut inside their
    own ``forward``, and hooking the layer that ends the branch changes no state_dict key. The
    hook is a bound method, so ``copy.deepcopy`` of the model (EMA) binds it to the copy.
    """

    @property
    def mode(self) -> str:
        """Always torchvision's "row" mode: one draw per example (read-only)."""
        return "row"

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = x.new_empty([x.shape[0]] + [1] * (x.ndim - 1)).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return self(output)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


def is_stochastic(module: nn.Module) -> bool:
    """Whether ``module`` draws random numbers in ``train()`` mode and none in ``eval()``:
    dropout of every kind, DropConnect, fractional max pooling, stochastic depth (ours and
    torchvision's, looked up rather than imported: see the module docstring)."""
    ops = sys.modules.get("torchvision.ops.stochastic_depth")
    own = (nn.modules.dropout._DropoutNd, _DropConnect, FractionalMaxPool, BranchDrop)
    return isinstance(module, own) or (ops is not None and isinstance(module, ops.StochasticDepth))


@contextlib.contextmanager
def noise_off(model: nn.Module) -> Iterator[None]:
    """Every random layer of ``model`` in eval mode inside the block, the rest as it was.

    For full-batch methods (L-BFGS): lecture 002 advises turning off all sources of noise, since
    a line search that sees a different loss at the same weights cannot converge. Normalisation
    layers stay in training mode (the batch statistics of the full batch are not noise).
    """
    switched = [m for m in model.modules() if m.training and is_stochastic(m)]
    for m in switched:
        m.train(False)
    try:
        yield
    finally:
        for m in switched:
            m.train(True)
