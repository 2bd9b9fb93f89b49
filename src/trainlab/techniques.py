"""Techniques a recipe turns on with a key rather than by naming a registered component.

Registries list the components (``trainlab list activation``); this table lists the rest of the
lectures' toolbox (penalties, dropout and its relatives, smoothing, early stopping), each with
the recipe line that selects it, so ``trainlab list technique`` shows where everything lives.
Every line is applied as an override in the tests, so the table cannot drift from the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TECHNIQUES", "Technique"]


@dataclass(frozen=True)
class Technique:
    """One technique: its name, the overrides that turn it on, what it does."""

    name: str
    overrides: tuple[str, ...]
    summary: str


TECHNIQUES: tuple[Technique, ...] = (
    Technique("l2", ("regularization.l2=5e-4",), "adds l2/2 * sum w^2 to the loss"),
    Technique("l1", ("regularization.l1=1e-5",), "adds l1 * sum |w| to the loss"),
    Technique(
        "elastic_net",
        ("regularization.l1=1e-5", "regularization.l2=5e-4"),
        "both penalties: l1 * sum |w| + l2/2 * sum w^2",
    ),
    Technique(
        "weight_decay",
        ("optimizer.weight_decay=0.05",),
        "decoupled weight decay w <- w - lr * wd * w beside the update (AdamW)",
    ),
    Technique(
        "dropout",
        ("model.dropout={keep: 0.8}",),
        "inverted dropout before fully connected layers; 0.2 = {drop: 0.2} = {keep: 0.8}",
    ),
    Technique(
        "dropconnect",
        ("model.dropconnect=0.1",),
        "each weight of every Linear/Conv zeroed with probability p in training",
    ),
    Technique(
        "fractional_max_pool",
        ("model.name=convnet", "model.pool=fractional"),
        "fractional max pooling (Graham) between convnet stages, ratio model.pool_ratio",
    ),
    Technique(
        "stochastic_depth",
        ("model.name=resnet", "model.stochastic_depth=0.2"),
        "residual block l of L kept with p_l = 1 - l/L (1 - p_L); the value is 1 - p_L",
    ),
    Technique(
        "zero_init_residual",
        ("model.name=resnet", "model.zero_init_residual=true"),
        "every residual block starts as the identity",
    ),
    Technique(
        "label_smoothing",
        ("loss.label_smoothing=0.1",),
        "targets (1 - eps) y + eps / C in training",
    ),
    Technique(
        "early_stopping",
        ("training.early_stopping={patience: 5}",),
        "stop when validation stops improving; restore the best weights",
    ),
    Technique(
        "grad_clip",
        ("training.grad_clip=1.0",),
        "clip the global gradient norm before each update",
    ),
    Technique(
        "ema",
        ("training.ema={decay: 0.999}",),
        "exponential moving average of the weights (and BN statistics); evaluated and saved",
    ),
    Technique(
        "tta",
        ("evaluation.tta=translate",),
        "test-time augmentation of the final test figures (summary.json: tta, gain per policy)",
    ),
    Technique(
        "snapshot_ensemble",
        ("schedule.name=sgdr", "training.snapshots=true"),
        "the weights at the end of each SGDR cycle; trainlab ensemble RUN --snapshots",
    ),
)
