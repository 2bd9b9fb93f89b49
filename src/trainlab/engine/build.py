"""``build(recipe) -> Parts``: everything a run is made of, each piece made by its own function.

torchtune's habit: set-up functions that return what they build, so a caller who needs one piece
(the doctor needs a model and a loader, ``evaluate`` a model and preprocessing, a search a whole
run) gets it without the rest, and nothing is built as a side effect of a constructor. The
Trainer only loops over the parts.

Seeding is explicit: ``build`` runs inside :func:`~trainlab.engine.seeding.run_state`, so the
recipe's seed decides the model's initial weights and the caller's global RNGs and torch's
determinism switches are as they were when it returns. The RNG state the build left behind is
kept in ``Parts.rng``: ``fit`` continues the run's stream from there.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from trainlab.data.augment import Pipeline
from trainlab.data.datasets import Splits, load_splits
from trainlab.data.loaders import DeviceLoader, WorkerLoader
from trainlab.data.preprocess import Preprocessor, create_preprocessor, resolve_preprocess_name
from trainlab.engine.distill import Distillation, build_distillation
from trainlab.engine.distributed import world
from trainlab.engine.seeding import rng_state, run_state
from trainlab.engine.transfer import load_pretrained
from trainlab.errors import RecipeError, TrainlabWarning
from trainlab.nn.init import INITS
from trainlab.nn.losses import LOSSES, num_outputs  # re-exported: build's __all__
from trainlab.nn.models import create_model
from trainlab.optim.optimizers import OPTIMIZERS, create_optimizer, scaled_lr
from trainlab.optim.schedules import ScaledLR, create_schedule
from trainlab.recipe import Recipe

__all__ = [
    "Parts",
    "build",
    "build_device",
    "build_splits",
    "build_preprocess",
    "resolve_preprocess",
    "warn_dropout_with_batch_norm",
    "build_model",
    "build_losses",
    "build_loader",
    "build_optimizer",
    "build_schedule",
    "pick_device",
    "num_outputs",
    "autocast_factory",
    "autocast_dtype",
    "grad_scaler",
    "as_tensor",
    "fit_sample",
    "nondeterministic_error",
]

Loader = DeviceLoader | WorkerLoader
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Parts:
    """One run's pieces. ``lr(step)`` is the absolute learning rate of a step (warm-up and
    schedule included); ``total_steps`` the run's length; ``rng`` the RNG state ``fit`` starts
    from. The model and optimiser are live objects: training changes them in place."""

    recipe: Recipe
    device: torch.device
    autocast: Callable[[], Any]
    splits: Splits
    preprocess: Preprocessor
    raw_sample: torch.Tensor  # the training inputs preprocessing was fitted on
    model: nn.Module
    loss_fn: LossFn
    eval_loss_fn: LossFn  # the plain loss (no label smoothing) that evaluation reports
    loader: Loader
    optimizer: torch.optim.Optimizer
    base_lr: float
    lr: Callable[[int], float]
    steps_per_epoch: int
    total_steps: int
    topk: int | None
    rng: dict[str, Any] = field(repr=False, default_factory=dict)
    distill: Distillation | None = None  # the teachers of ``distill:`` (None: off)
    pretrained: tuple[str, ...] = ()  # parameter names model.from loaded (engine.transfer)

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def needs_closure(self) -> bool:
        """Full-batch optimisers (L-BFGS) step through a closure, one step per epoch."""
        return OPTIMIZERS.get(self.recipe.optimizer.name).info["optim"].needs_closure

    def fresh_optimizer(
        self, model: nn.Module, lr: float | None = None, weight_decay: float | None = None
    ) -> torch.optim.Optimizer:
        """The recipe's optimiser over another model (a copy a diagnosis trains)."""
        lr = self.base_lr if lr is None else lr
        return build_optimizer(self.recipe, model, lr, weight_decay, self.pretrained)


def build(recipe: Recipe, *, model: nn.Module | None = None) -> Parts:
    """Every piece of a run of ``recipe``, seeded by ``recipe.seed``; no file is written and the
    caller's global state is left as it was. ``model``: an instance to train instead of the one
    the recipe names (its weights are kept unless the recipe names an init)."""
    tcfg = recipe.training
    with run_state(recipe.seed, tcfg.deterministic):
        device = build_device(recipe)
        splits = build_splits(recipe)
        recipe = resolve_preprocess(recipe, splits.in_shape)
        preprocess, raw_sample = build_preprocess(recipe, splits, device)
        net = build_model(recipe, splits, preprocess, raw_sample, device, module=model)
        if tcfg.channels_last:
            net = to_channels_last(net, splits.in_shape)
        pretrained = load_pretrained(recipe, net, splits.classes)  # model.from; () when off
        warn_dropout_with_batch_norm(net)
        loss_fn, eval_loss_fn = build_losses(recipe)
        info = OPTIMIZERS.get(recipe.optimizer.name).info["optim"]
        loader = build_loader(recipe, splits, preprocess, raw_sample, device, info.needs_closure)
        steps_per_epoch = 1 if info.needs_closure else len(loader)
        total = tcfg.max_steps if tcfg.max_steps is not None else tcfg.epochs * steps_per_epoch
        base_lr = scaled_lr(  # on the global batch (training.batch_size times the processes)
            recipe.optimizer.lr,
            tcfg.batch_size * world()[1],
            recipe.optimizer.base_batch_size,
            recipe.optimizer.lr_scaling,
        )
        optimizer = build_optimizer(recipe, net, base_lr, pretrained=pretrained)
        lr = build_schedule(recipe, base_lr, steps_per_epoch, total)
        topk = build_topk(recipe, splits.num_classes)
        check_forward(recipe, net, preprocess, splits, device)
        distill = build_distillation(recipe, splits, preprocess, device)
        rng = rng_state()
    return Parts(
        recipe=recipe,
        device=device,
        autocast=autocast_factory(tcfg.precision, device),
        splits=splits,
        preprocess=preprocess,
        raw_sample=raw_sample,
        model=net,
        loss_fn=loss_fn,
        eval_loss_fn=eval_loss_fn,
        loader=loader,
        optimizer=optimizer,
        base_lr=base_lr,
        lr=lr,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        topk=topk,
        distill=distill,
        pretrained=pretrained,
        rng=rng,
    )


# ----------------------------------------------------------------------------------------------
# the pieces


def to_channels_last(net: nn.Module, in_shape: tuple[int, ...]) -> nn.Module:
    """``training.channels_last``: the 4-D weights in NHWC order (the step converts each batch
    too); convolutions on GPUs run faster so, above all under bf16/fp16."""
    if len(in_shape) != 3:
        raise RecipeError(
            f"training.channels_last: needs images (C, H, W); these inputs are {in_shape}"
        )
    return net.to(memory_format=torch.channels_last)


def build_device(recipe: Recipe) -> torch.device:
    return pick_device(recipe.training.device)


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when there is one, else the CPU; a named device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RecipeError(f"training.device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"training.device={name!r}: no CUDA device is available here")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``training.precision`` (None: fp32). ``auto``: bf16 on CUDA, fp16
    on a CUDA device without bf16 (with a GradScaler: :func:`grad_scaler`), else fp32."""
    if precision == "auto" and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def autocast_factory(precision: str, device: torch.device) -> Callable[[], Any]:
    """The autocast context of ``training.precision`` on ``device`` (see :func:`autocast_dtype`)."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's loss scaling (a fresh one per step object: its scale is training state)."""
    if autocast_dtype(precision, device) is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def build_splits(recipe: Recipe) -> Splits:
    """The recipe's train/validation/test splits; what the reader and the splits did to the
    data (skipped or converted files, empty declared classes, a class left without validation
    or test examples) is warned about, never silent."""
    splits = load_splits(recipe.data)
    for note in splits.notes:
        if not note.startswith("decoded"):  # where the image cache is: not a change to the data
            warnings.warn(f"{splits.source}: {note}", TrainlabWarning, stacklevel=3)
    return splits


def resolve_preprocess(recipe: Recipe, in_shape: tuple[int, ...]) -> Recipe:
    """``recipe`` with ``preprocess.name: auto`` replaced by the concrete choice for examples
    of shape ``in_shape`` (per_channel with spatial dims, standardize for feature vectors), so
    the run folder's recipe.yaml states what ran and re-runs it on any data alike."""
    name = resolve_preprocess_name(recipe.preprocess.name, tuple(in_shape))
    if name == recipe.preprocess.name:
        return recipe
    return recipe.model_copy(
        update={"preprocess": recipe.preprocess.model_copy(update={"name": name})}
    )


def build_preprocess(
    recipe: Recipe, splits: Splits, device: torch.device
) -> tuple[Preprocessor, torch.Tensor]:
    """Preprocessing fitted on the training split only (and the raw inputs it was fitted on)."""
    cfg = recipe.preprocess
    pre = create_preprocessor(cfg.name, cfg.eps, tuple(splits.in_shape))
    raw_sample = fit_sample(splits.x_train, recipe.seed)
    return pre.fit(raw_sample).to(device), raw_sample


def warn_dropout_with_batch_norm(model: nn.Module) -> None:
    """One TrainlabWarning when the built model has both dropout (p > 0) and batch norm:
    lecture 001, "usually does not work well when combined with batch-norm". Dropout changes
    a unit's variance between training and evaluation, and a batch norm layer after it keeps
    the training variance in its running statistics (Li et al. 2019, the variance shift).
    Checked on the modules, so a user's own class is covered too."""
    modules = list(model.modules())
    dropout = next(
        (m for m in modules if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0), None
    )
    norm = next((m for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)), None)
    if dropout is None or norm is None:
        return
    warnings.warn(
        f"the model combines dropout ({type(dropout).__name__}, p={dropout.p}) with batch norm "
        f"({type(norm).__name__}): the variance shift between training and evaluation usually "
        "costs accuracy (lecture 001); keep one of them (model.dropout: 0, or a model.norm "
        "other than batch), or put dropout only after the last batch norm layer",
        TrainlabWarning,
        stacklevel=3,
    )


@torch.no_grad()
def init_sample(
    recipe: Recipe, preprocess: Preprocessor, raw_sample: torch.Tensor, device: torch.device
) -> torch.Tensor | None:
    """Preprocessed training inputs for a data-dependent init (LSUV), else None."""
    if not INITS.get(recipe.model.init.name).info.get("needs_sample"):
        return None
    return preprocess(raw_sample[:256].to(device))


def build_model(
    recipe: Recipe,
    splits: Splits,
    preprocess: Preprocessor,
    raw_sample: torch.Tensor,
    device: torch.device,
    module: nn.Module | None = None,
) -> nn.Module:
    """The recipe's model (or ``module``), regularised and initialised, on ``device``.

    A user's class (``package.module:Class``) or a torchvision model whose constructor raises
    is the user's mistake (a bad ``model.kwargs``, a bug in their ``__init__``), so it becomes
    one line naming the class and the exception instead of a traceback through trainlab. Only
    an exception raised inside that construction (``trainlab.nn.models``' ``_user_class`` and
    ``_torchvision``) is turned; any other still shows its traceback, as a bug of ours.
    """
    sample = init_sample(recipe, preprocess, raw_sample, device)
    outputs = num_outputs(recipe.loss.name, splits.num_classes)
    try:
        model = create_model(recipe.model, splits.in_shape, outputs, sample, module=module)
    except RecipeError:
        raise
    except Exception as exc:
        tb, constructing = exc.__traceback__, False
        while tb is not None and not constructing:
            frame = tb.tb_frame
            constructing = frame.f_code.co_name in {"_user_class", "_torchvision"} and (
                frame.f_globals.get("__name__") == "trainlab.nn.models"
            )
            tb = tb.tb_next
        if not constructing:
            raise
        cfg = recipe.model
        what = " ".join(str(exc).split())[:300] or "(no message)"
        given = f" (model.kwargs: {cfg.kwargs})" if cfg.kwargs else ""
        raise RecipeError(
            f"model.name={cfg.name!r}: constructing the model raised {type(exc).__name__}: "
            f"{what}{given}"
        ) from None
    return model.to(device)


def build_losses(recipe: Recipe) -> tuple[LossFn, LossFn]:
    """The training loss and the plain one evaluation reports (label smoothing is a
    training-only regulariser)."""
    params = recipe.loss.params()
    plain = {k: (0.0 if k == "label_smoothing" else v) for k, v in params.items()}
    return LOSSES.build(recipe.loss.name, **params), LOSSES.build(recipe.loss.name, **plain)


def build_loader(
    recipe: Recipe,
    splits: Splits,
    preprocess: Preprocessor,
    raw_sample: torch.Tensor,
    device: torch.device,
    needs_closure: bool = False,
) -> Loader:
    """Training batches: sliced from device-resident tensors when the data fits
    (``data.max_resident_mb``), else decoded by DataLoader workers."""
    data, tcfg = recipe.data, recipe.training
    augment = Pipeline.from_specs(recipe.augment, splits.num_classes)
    augment.check(splits.in_shape)
    augment.fit(raw_sample)
    x = as_tensor(splits.x_train)
    y = torch.from_numpy(splits.y_train)
    nbytes = sum(a.nbytes for a in (splits.x_train, splits.x_val, splits.x_test))
    streamed = not isinstance(x, torch.Tensor)
    resident = not streamed and (
        data.loader == "device"
        or (data.loader == "auto" and nbytes <= data.max_resident_mb * 2**20)
    )
    if streamed and needs_closure:
        raise RecipeError(
            f"optimizer.name={recipe.optimizer.name}: full-batch optimisers need the data in "
            "memory; this image folder is streamed (raise data.max_resident_mb)"
        )
    common = (tcfg.batch_size, tcfg.drop_last, augment, recipe.seed, preprocess)
    shard = world()  # under torchrun: this process's share of each global batch
    if resident:
        return DeviceLoader(x.to(device), y.to(device), *common, shard=shard)
    return WorkerLoader(x, y, *common, device, data.num_workers, shard=shard)


def build_optimizer(
    recipe: Recipe,
    model: nn.Module,
    lr: float,
    weight_decay: float | None = None,
    pretrained: tuple[str, ...] = (),
) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``model`` at ``lr`` (decoupled weight decay set up;
    ``weight_decay`` overrides the recipe's, e.g. 0 for a diagnosis; the ``pretrained``
    parameters at ``optimizer.pretrained_lr_scale`` times the lr)."""
    ocfg, rcfg = recipe.optimizer, recipe.regularization
    wd = ocfg.weight_decay if weight_decay is None else weight_decay
    return create_optimizer(
        ocfg.name, ocfg.params(), model, lr, rcfg.decay_bias_and_norm, wd,
        pretrained, ocfg.pretrained_lr_scale, ocfg.fused,
    )  # fmt: skip


def build_schedule(
    recipe: Recipe, base_lr: float, steps_per_epoch: int, total_steps: int
) -> ScaledLR:
    """``lr(step)``: the absolute learning rate of each step, warm-up included; a
    :class:`ScaledLR` so that ``reduce_on_plateau``'s callback can lower it (scale 1 otherwise,
    which leaves every other schedule's lr bit for bit as ``base_lr * mult``)."""
    scfg = recipe.schedule
    warmup = scfg.warmup_steps or round(scfg.warmup_epochs * steps_per_epoch)
    if warmup >= total_steps:
        raise RecipeError(
            f"schedule: warm-up of {warmup} steps is not shorter than the "
            f"{total_steps} training steps"
        )
    mult = create_schedule(scfg.name, scfg.params(), base_lr, steps_per_epoch, warmup, total_steps)
    return ScaledLR(base_lr, mult)


def build_topk(recipe: Recipe, num_classes: int) -> int | None:
    """``evaluation.topk``, default 5 when there are more than 5 classes."""
    topk = recipe.evaluation.topk or (5 if num_classes > 5 else None)
    if topk is not None and topk >= num_classes:
        raise RecipeError(
            f"evaluation.topk={topk} must be below the number of classes ({num_classes})"
        )
    return topk


_NONDETERMINISTIC = " does not have a deterministic implementation"


def nondeterministic_error(
    exc: RuntimeError, device: torch.device, where: str
) -> RecipeError | None:
    """The one-line recipe error for torch's refusal of an op under ``deterministic: true``
    (None for any other RuntimeError): names the op, the device and what to set instead."""
    message = str(exc)
    if _NONDETERMINISTIC not in message:
        return None
    op = message.split(_NONDETERMINISTIC)[0].strip().split("\n")[-1]
    return RecipeError(
        f"training.deterministic=true: {op} has no deterministic implementation on "
        f"{device.type} ({where}); set training.deterministic: warn to run it anyway with a "
        "warning (results may then differ between runs), or false"
    )


def check_forward(
    recipe: Recipe, model: nn.Module, preprocess: Preprocessor, splits: Splits, device: torch.device
) -> None:
    """One forward pass on two training examples, in eval mode, before any folder exists: a
    model that does not fit the data fails here with its name, not mid-run. Under
    ``deterministic: true`` a backward pass follows, so an op without a deterministic kernel is
    named here too."""
    x = as_tensor(splits.x_train[:2])
    x = torch.stack([x[i] for i in range(2)]) if not isinstance(x, torch.Tensor) else x
    backward = recipe.training.deterministic is True
    model.eval()
    try:
        with torch.set_grad_enabled(backward):
            out = model(preprocess(x.to(device)))
            if backward and out.requires_grad:
                out.float().sum().backward()
    except (RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, RuntimeError) and (
            error := nondeterministic_error(exc, device, "in the check before training")
        ):
            raise error from None
        first = " ".join(str(exc).split())[:200]
        raise RecipeError(
            f"model.name={recipe.model.name!r}: a forward pass on examples of shape "
            f"{tuple(x.shape[1:])} failed ({first})"
        ) from None
    finally:
        model.zero_grad(set_to_none=True)
        model.train()
    out = out.detach()
    expected = num_outputs(recipe.loss.name, splits.num_classes)
    if out.ndim != 2 or out.shape[1] != expected:
        raise RecipeError(
            f"model.name={recipe.model.name!r}: outputs have shape {tuple(out.shape)}, "
            f"expected (N, {expected}) for {splits.num_classes} classes"
        )


def as_tensor(x: Any) -> Any:
    """A numpy split as a tensor (no copy); streamed image files stay as they are."""
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def fit_sample(x: Any, seed: int, limit: int = 10_000) -> torch.Tensor:
    """What preprocessing is fitted on: the whole training split, or, for streamed files, a
    fixed random subset of ``limit`` decoded training images (the statistics settle long before).
    """
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(x), size=min(limit, len(x)), replace=False)
    return torch.stack([x[int(i)] for i in np.sort(picked)])
