"""Test-time augmentation and Monte Carlo dropout: "training: add some randomness; testing:
marginalise over it" (lecture 000), for a trained run loaded with :func:`load_run`.

A **policy** turns a batch of raw inputs into a fixed, deterministic set of weighted *views*
(unlike the training augmentations in :mod:`trainlab.data.augment`, which draw at random); the
model's class probabilities are averaged over the views with those weights. Views are made
from the *raw* batch and each view is then preprocessed, because that is where training
augments (:mod:`trainlab.data.loaders`): a crop pads with black pixels whatever the
preprocessing, and a whitening preprocessor sees the same kind of input it was fitted on.

Every view has the model's input size. The crops are taken from the image padded by
``pad`` pixels (the ResNet 10-crop set of 224 crops out of a 256 image is a crop of 87.5%;
an 8x8 digit has no pixel to spare, and our training crops are exactly such pad-and-crop
translations). The alternative, evaluating at the crop size, only works for fully
convolutional models (the MLP, and a convnet whose last map would shrink to nothing, cannot),
and resizing a crop back would show the model a scale it never trained on. Multi-scale
resizes the whole image up first and then takes the same 10 crops, as He et al. 2015 do.

Policies (views per example; weights equal unless said):

- ``identity`` (any input): the input alone, exactly plain evaluation. 1.
- ``flip`` (images): the input and its horizontal flip. 2.
- ``crops`` (images): pad by ``pad``; the 4 corner crops, the centre crop (= the input) and
  the horizontal flip of each (lecture 001, He et al. 2015). 10.
- ``five_crops`` (images): the first five of those, without the flips: for classes that a
  mirror changes (digits, letters), where a flipped view is not an example of its class. 5.
- ``multiscale`` (images): ``crops`` of the image resized by each factor of :data:`SCALES`
  (He et al.'s short sides {224, 256, 384, 480, 640} are factors up to 2.9 of their 224
  crops; an 8x8 digit at 23x23 shows the model a scale it never saw). 30.
- ``translate`` (images): airbench's: 1/2 the input, 1/4 each of its translations by
  (+1, +1) and (-1, -1) pixels, reflect-padded as airbench and hlb-CIFAR10 do. 3.
- ``flip_translate`` (images): airbench's full TTA, those three each averaged with its flip. 6.
- ``shifts`` (1-D signals): shifts by :data:`SHIFTS` samples along the last axis, circular or
  zero-padded as the recipe's ``shift`` augmentation (MNIST-1D's own: circular). 5.
- ``fmp`` (any input, a model with ``model.pool: fractional``): :data:`FMP_DRAWS` passes
  with every fractional max-pooling layer drawing its regions (train mode), all other layers
  in eval mode (Graham 2014). 12.

**MC dropout** (Gal & Ghahramani 2016): ``T`` passes with every dropout-like layer (dropout,
DropConnect, stochastic depth; never batch norm, whose batch statistics would depend on the
batch) in train mode; the probabilities are averaged over the passes (and each pass over the
policy's views). Per example it reports the **entropy** of the mean probabilities
``-sum_c pbar_c log pbar_c`` (nats; total predictive uncertainty) and the **variance**:
the mean over classes of the variance across the ``T`` passes of ``p_t,c`` (population
variance, /T; 0 when the passes agree). The random layers draw from torch's global generator,
seeded from ``seed`` and the batch's index inside a saved and restored RNG state
(:func:`trainlab.engine.seeding.preserved_global_state`): the same command gives the same
numbers, and the caller's RNG is untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from trainlab.engine.calibration import CalibrationSums, probabilities
from trainlab.engine.metrics import predictions
from trainlab.errors import TrainlabError
from trainlab.evaluation.tta_views import (
    POLICIES,
    TTAPolicy,
    ViewParams,
    has_sampling,
    resolve_policies,
    samples,
)

if TYPE_CHECKING:
    from trainlab.evaluation.predictor import Predictor

__all__ = [
    "Averaged",
    "check_mc_dropout",
    "average_batch",
    "averaged_batches",
    "averaged_probabilities",
    "tta_levels",
]


def check_mc_dropout(passes: int | None, model: nn.Module) -> int | None:
    """``passes`` if it is a valid number of MC-dropout passes for this model (None: off)."""
    if passes is None:
        return None
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise TrainlabError(f"--mc-dropout {passes!r}: expected a number of passes >= 1")
    if not has_sampling(model, pool=False):
        raise TrainlabError(
            f"--mc-dropout {passes}: the model has no dropout (model.dropout, "
            "model.dropconnect or model.stochastic_depth): every pass would be the same"
        )
    return passes


@contextlib.contextmanager
def _sampling(model: nn.Module, dropout: bool, pool: bool, seed: int) -> Iterator[None]:
    """The chosen random layers in train mode, everything else as it was (eval), and torch's
    RNG seeded with ``seed`` inside; the modes and the caller's RNG restored afterwards."""
    from trainlab.engine.seeding import preserved_global_state

    chosen = [
        m for m in model.modules() if (dropout and samples(m, False)) or (pool and samples(m, True))
    ]
    if not chosen:
        yield
        return
    was = [m.training for m in chosen]
    with preserved_global_state():
        torch.manual_seed(seed)
        for m in chosen:
            m.training = True
        try:
            yield
        finally:
            for m, mode in zip(chosen, was, strict=True):
                m.training = mode


@dataclass
class Averaged:
    """One batch's averaged probabilities (N, K); ``scores`` where there was one deterministic
    view (so plain evaluation's exact figures follow); entropy and variance per example with
    MC dropout."""

    probs: torch.Tensor
    scores: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    variance: torch.Tensor | None = None
    y: torch.Tensor | None = field(default=None, repr=False)


def _forward(predictor: Predictor, raw: torch.Tensor) -> torch.Tensor:
    with predictor.autocast():
        return predictor.model(predictor.preprocess(raw)).float()


@torch.no_grad()
def average_batch(
    predictor: Predictor,
    raw: torch.Tensor,
    policy: TTAPolicy,
    params: ViewParams,
    mc_dropout: int | None = None,
    seed: int = 0,
) -> Averaged:
    """A raw batch's probabilities averaged over ``policy``'s views (and pooling draws), and
    over ``mc_dropout`` passes with dropout on: see the module docstring."""
    draws = max(policy.pool_draws, 1)
    passes = mc_dropout or 1
    if policy.count == 1 and not mc_dropout and not policy.pool_draws:
        scores = _forward(predictor, raw)
        return Averaged(probabilities(scores), scores)
    per_pass = []
    with _sampling(predictor.model, bool(mc_dropout), bool(policy.pool_draws), seed):
        for _ in range(passes):
            mean: torch.Tensor | Any = 0.0
            for weight, view in policy.views(raw, params):
                for _ in range(draws):
                    mean = mean + probabilities(_forward(predictor, view)) * (weight / draws)
            per_pass.append(mean)
    stacked = torch.stack(per_pass)
    probs = stacked.mean(0)
    if not mc_dropout:
        return Averaged(probs)
    entropy = -torch.special.xlogy(probs, probs).sum(1)
    variance = stacked.var(0, correction=0).mean(1)
    return Averaged(probs, None, entropy, variance)


def _raw_batches(
    predictor: Predictor, x: Any, y: Any | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Raw (unpreprocessed) batches on the model's device, streamed: nothing but one batch
    and its views is held at a time (image files stay files until their batch)."""
    from typing import cast

    from trainlab.data.loaders import eval_batches
    from trainlab.data.preprocess import Preprocessor

    xs = x if hasattr(x, "decode") else predictor.inputs(x)
    n = len(xs)
    ys = torch.zeros(n, dtype=torch.long) if y is None else torch.as_tensor(np.asarray(y))
    keep = cast(Preprocessor, nn.Identity())  # views are made from raw inputs
    size = predictor.recipe.evaluation.batch_size
    yield from eval_batches(
        xs, ys.long(), size, keep, predictor.device, predictor.recipe.data.num_workers
    )


def averaged_batches(
    predictor: Predictor,
    x: Any,
    y: Any | None = None,
    policy: str | TTAPolicy = "identity",
    mc_dropout: int | None = None,
    seed: int = 0,
) -> Iterator[Averaged]:
    """:func:`average_batch` over ``x`` batch by batch (``evaluation.batch_size``), each with
    its labels in ``.y`` when ``y`` is given. Batch ``i`` is seeded with ``seed + i``."""
    if isinstance(policy, str):
        named = resolve_policies(policy, predictor.in_shape, predictor.model)
        if len(named) != 1:
            raise TrainlabError(f"--tta {policy}: one policy here (its views are averaged)")
        policy = named[0]
    mc_dropout = check_mc_dropout(mc_dropout, predictor.model)
    params = ViewParams.from_recipe(predictor.recipe)
    for i, (raw, yb) in enumerate(_raw_batches(predictor, x, y)):
        out = average_batch(predictor, raw, policy, params, mc_dropout, seed + i)
        out.y = yb if y is not None else None
        yield out


def averaged_probabilities(
    predictor: Predictor,
    x: Any,
    policy: str | TTAPolicy = "identity",
    mc_dropout: int | None = None,
    seed: int = 0,
) -> Averaged:
    """All of ``x``'s averaged probabilities (N, K) on the CPU, with per-example entropy and
    variance under MC dropout (for ``predict``: one row per input is kept anyway)."""
    parts = [
        Averaged(
            a.probs.cpu(), None,
            None if a.entropy is None else a.entropy.cpu(),
            None if a.variance is None else a.variance.cpu(),
        )
        for a in averaged_batches(predictor, x, None, policy, mc_dropout, seed)
    ]  # fmt: skip
    k = len(predictor.classes)
    if not parts:
        return Averaged(torch.empty(0, k))

    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(a, name) for a in parts]
        return None if values[0] is None else torch.cat(values)

    return Averaged(torch.cat([a.probs for a in parts]), None, cat("entropy"), cat("variance"))


@dataclass
class _Level:
    """Accuracy and calibration sums of one (policy, MC passes) combination."""

    name: str
    policy: TTAPolicy
    mc_dropout: int | None
    device: torch.device
    correct: torch.Tensor = field(init=False)
    sums: CalibrationSums = field(init=False)

    def __post_init__(self) -> None:
        self.correct = torch.zeros((), dtype=torch.float64, device=self.device)
        self.sums = CalibrationSums(self.device)

    def add(self, out: Averaged, y: torch.Tensor) -> None:
        if out.scores is not None:  # one deterministic view: exactly what evaluate computes
            pred = predictions(out.scores)
            self.sums.add(out.scores, y)
        else:
            pred = out.probs.argmax(1)
            self.sums.add(out.probs, y, from_probs=True)
        self.correct += (pred == y).sum()

    def result(self, n: int, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_acc": float(self.correct) / max(n, 1),
            **self.sums.result(prefix),
            "views": self.policy.count * (self.mc_dropout or 1),
        }


def level_name(policy: TTAPolicy, mc_dropout: int | None) -> str:
    """``flip``, ``mc_dropout8``, ``flip+mc_dropout8`` (``identity`` alone stays itself)."""
    if not mc_dropout:
        return policy.name
    mc = f"mc_dropout{mc_dropout}"
    return mc if policy.name == "identity" else f"{policy.name}+{mc}"


def tta_levels(
    predictor: Predictor,
    x: Any,
    y: Any,
    tta: str | Sequence[str] | None = None,
    mc_dropout: int | None = None,
    prefix: str = "test",
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, NLL, ECE and Brier score of plain evaluation (``identity``) and of each
    requested policy, each also with ``mc_dropout`` passes when given, in one streamed pass
    over the data; ``gains`` holds each level's difference from ``identity``.

    ``{"levels": {name: {test_acc, test_nll, test_ece, test_brier, views}}, "gains": {name:
    {test_acc: +0.0062, ...}}, "lines": ["flip: test_acc 0.9650 -> 0.9712 (+0.62)", ...]}``
    (percentage points in the lines).
    """
    policies = resolve_policies(tta, predictor.in_shape, predictor.model) if tta else []
    mc_dropout = check_mc_dropout(mc_dropout, predictor.model)
    base = POLICIES["identity"]
    policies = [base, *(p for p in policies if p is not base)]
    combos = [(p, None) for p in policies]
    if mc_dropout:
        combos += [(p, mc_dropout) for p in policies]
    levels = [_Level(level_name(p, t), p, t, predictor.device) for p, t in combos]
    params = ViewParams.from_recipe(predictor.recipe)
    n = 0
    for i, (raw, yb) in enumerate(_raw_batches(predictor, x, y)):
        n += len(yb)
        for level in levels:
            level.add(
                average_batch(predictor, raw, level.policy, params, level.mc_dropout, seed + i), yb
            )
    results = {level.name: level.result(n, prefix) for level in levels}
    plain = results[base.name]
    metrics = [k for k in plain if k != "views"]
    gains = {
        name: {k: r[k] - plain[k] for k in metrics}
        for name, r in results.items()
        if name != "identity"
    }
    lines = [
        f"{name}: {prefix}_acc {plain[f'{prefix}_acc']:.4f} -> {r[f'{prefix}_acc']:.4f} "
        f"({100 * gains[name][f'{prefix}_acc']:+.2f}), {prefix}_nll {plain[f'{prefix}_nll']:.4f}"
        f" -> {r[f'{prefix}_nll']:.4f}, {prefix}_ece {plain[f'{prefix}_ece']:.4f} -> "
        f"{r[f'{prefix}_ece']:.4f}"
        for name, r in results.items()
        if name != "identity"
    ]
    return {"baseline": "identity", "levels": results, "gains": gains, "lines": lines}
