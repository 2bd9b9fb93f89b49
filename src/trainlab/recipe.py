"""The recipe: one YAML file that says everything about a training run, validated before it runs.

A recipe is data, never code. Every section is a pydantic model with ``extra="forbid"``, so a
misspelled key is refused with the closest valid one. Sections that pick a registered component
(``model.activation``, ``loss``, ``optimizer``, ``schedule``, ...) take either the bare name or a
mapping ``{name: ..., param: value}``; their parameters are checked against the component's own
signature and every default is filled in, so the resolved recipe written to a run folder states
every choice and can be re-run as is.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from trainlab.errors import RecipeError
from trainlab.registry import REGISTRIES, closest

__all__ = [
    "Recipe",
    "load_recipe",
    "resolve_recipe",
    "apply_overrides",
    "DEFAULT_RECIPE",
    "recipe_to_yaml",
]

DEFAULT_RECIPE = Path(__file__).parent / "recipes" / "digits.yaml"


def _registry(kind: str):
    """The registry of ``kind``, importing the component catalogue on first use."""
    import trainlab.catalog  # noqa: F401  (registers every component)

    return REGISTRIES[kind]


def _name_only(value: Any) -> Any:
    """The shorthand ``relu`` for ``{name: relu}`` (a section that names one component)."""
    return {"name": value} if isinstance(value, str) else value


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors; assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Named(BaseModel):
    """A registered component chosen by ``name`` with its own parameters beside it.

    ``relu`` and ``{name: relu}`` mean the same. Extra keys must be parameters of the component's
    factory; missing ones are filled with the factory's defaults.
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    kind: ClassVar[str] = ""
    own_fields: ClassVar[tuple[str, ...]] = ()
    name: str

    _shorthand = model_validator(mode="before")(classmethod(lambda cls, v: _name_only(v)))

    @model_validator(mode="wrap")
    @classmethod
    def _check_params(cls, value: Any, handler: ModelWrapValidatorHandler[Named]) -> Named:
        """Own fields by pydantic, parameters by the factory: every problem of both at once.

        A bad ``lr`` does not hide a misspelled ``beta1``, nor one bad parameter another.
        """
        value = _name_only(value)
        try:
            spec, errors = handler(value), []
        except ValidationError as exc:
            if not isinstance(value, dict):
                raise
            spec, errors = None, exc.errors()
        if spec is not None:
            name, extras = spec.name, dict(spec.model_extra or {})
        else:
            name = value.get("name", cls.model_fields["name"].default)
            extras = {k: v for k, v in value.items() if k not in cls.model_fields}
        registry = _registry(cls.kind)
        problems, accepted, checked = [], {}, {}
        if not isinstance(name, str):
            pass  # pydantic has said so
        elif name not in registry:
            problems.append(registry.unknown_message(name))
        else:
            accepted, types = registry.get(name).params(), registry.get(name).param_types()
            for key, param in extras.items():
                if key not in accepted:
                    problems.append(registry.unknown_param_message(name, key, cls.own_fields))
                elif key in types:
                    try:
                        checked[key] = _check_param(cls.kind, name, key, types[key], param)
                    except ValueError as exc:
                        problems.append(str(exc))
        if spec is None or problems:
            raise _validation_error(cls.__name__, errors, problems, value)
        for key, param in checked.items():
            setattr(spec, key, param)
        for key, default in accepted.items():
            if key not in extras:
                setattr(spec, key, default)
        return spec

    def params(self) -> dict[str, Any]:
        """The component's parameters (everything but ``name`` and the section's own fields)."""
        return {k: v for k, v in (self.model_extra or {}).items()}

    def build(self, **context: Any) -> Any:
        """Build the component, passing ``context`` (e.g. channels) beside the recipe's params."""
        return _registry(self.kind).get(self.name).factory(**self.params(), **context)


def _check_param(kind: str, name: str, key: str, annotation: Any, value: Any) -> Any:
    """A component parameter checked against the factory's annotation (type and range)."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise ValueError(f"{kind} {name!r} parameter {key!r}: {msg} (got {value!r})") from None


def _validation_error(
    title: str, errors: list[Any], problems: list[str], value: Any = None
) -> ValidationError:
    """pydantic's ``errors`` (kept as they are) and our own ``problems`` as one ValidationError.

    Raised inside a validator, every one of them is reported (a ValueError is only one).
    """
    details = [_error_details(err) for err in errors]
    details += [
        InitErrorDetails(type=PydanticCustomError("value_error", p), loc=(), input=value)
        for p in problems
    ]
    return ValidationError.from_exception_data(title, details)


_KNOWN_ERRORS = frozenset(typing.get_args(core_schema.ErrorType))


def _error_details(err: Any) -> InitErrorDetails:
    """One error of ``ValidationError.errors()`` back as details, its type and context kept."""
    loc, given = tuple(err["loc"]), err.get("input")
    if err["type"] in _KNOWN_ERRORS:
        known = InitErrorDetails(type=err["type"], loc=loc, input=given)
        if "ctx" in err:
            known["ctx"] = err["ctx"]
        try:  # a custom error may reuse a known type's name without its context
            ValidationError.from_exception_data("check", [known])
            return known
        except (TypeError, KeyError, ValueError):
            pass
    custom = PydanticCustomError(err["type"], err["msg"])
    return InitErrorDetails(type=custom, loc=loc, input=given)


def named(kind: str) -> type[Named]:
    """A Named subclass bound to one registry (``named("activation")``)."""
    return type(f"{kind.title()}Spec", (Named,), {"kind": kind, "__module__": __name__})


def registered_name(kind: str):
    """A field validator for ``name``: it must be registered in the ``kind`` registry."""

    def check(cls, name: str) -> str:
        registry = _registry(kind)
        if name not in registry:
            raise ValueError(registry.unknown_message(name))
        return name

    return field_validator("name")(classmethod(check))


ActivationSpec = named("activation")
NormSpec = named("norm")
InitSpec = named("init")
LossSpec = named("loss")
AugmentSpec = named("augment")


class DataConfig(Section):
    """Where the examples come from and how validation is carved out of the training split."""

    name: str = Field("digits", description="registered dataset (trainlab list dataset)")
    path: str | None = None
    test_path: str | None = None
    labels_path: str | None = None
    label_column: str = "label"
    image_size: int | None = Field(None, gt=0)
    num_classes: int | None = Field(
        None,
        ge=2,
        description="C, labels 0..C-1; default: the data's class names, else the largest "
        "training label + 1 (then every class needs training examples)",
    )
    classes: list[str] | None = Field(
        None,
        min_length=2,
        description="class names in label order (their count is C); a dataset that names its "
        "classes is mapped onto them by name",
    )
    keep_classes: list[int] | None = Field(
        None,
        min_length=2,
        description="train on these source labels only (e.g. [5, 6, 7, 8, 9]): other examples "
        "are dropped, the kept labels become 0..K-1 in this order, their class names are kept",
    )
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    stratify: bool = Field(
        True,
        description="validation and carved test splits keep each class's share, and at least "
        "one example of it in train; false: a plain random cut",
    )
    split_seed: int = 0
    cache_dir: str | None = None
    on_corrupt: Literal["stop", "skip"] = Field(
        "stop", description="an unreadable image stops loading, or is skipped and counted"
    )
    max_image_pixels: int = Field(
        89_478_485, gt=0, description="larger images are refused as decompression bombs"
    )
    loader: Literal["auto", "device", "dataloader"] = "auto"
    num_workers: int = Field(2, ge=0)
    max_resident_mb: float = Field(4096.0, gt=0, description="larger data is streamed")

    _known = registered_name("dataset")

    @field_validator("classes")
    @classmethod
    def _distinct_names(cls, names: list[str] | None) -> list[str] | None:
        """Two classes of one name could not be told apart in any report."""
        if names is not None:
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"class names must differ; given twice: {', '.join(twice)}")
        return names

    @field_validator("keep_classes")
    @classmethod
    def _distinct_labels(cls, labels: list[int] | None) -> list[int] | None:
        if labels is not None and (min(labels) < 0 or len(set(labels)) != len(labels)):
            raise ValueError(f"expected distinct labels >= 0, got {labels}")
        return labels

    @model_validator(mode="after")
    def _classes_agree(self) -> DataConfig:
        """data.num_classes and data.classes both state C: they must say the same."""
        if self.classes is not None and self.num_classes not in (None, len(self.classes)):
            raise ValueError(
                f"num_classes={self.num_classes} but classes names {len(self.classes)}; "
                "give one of them, or make them agree"
            )
        return self


class PreprocessConfig(Section):
    """Input normalisation fitted on the training split only, applied identically everywhere."""

    _shorthand = model_validator(mode="before")(classmethod(lambda cls, v: _name_only(v)))

    name: str = Field(
        "auto",
        description="registered preprocessing (trainlab list preprocess); auto: per_channel "
        "for inputs with spatial dims (C, L) or (C, H, W), standardize for (D,) feature "
        "vectors, chosen when the run is built and written into the run's recipe.yaml",
    )
    eps: float = Field(1e-5, gt=0.0)

    _known = registered_name("preprocess")


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
# torchvision's weights enums (ResNet18_Weights.DEFAULT) and their members (IMAGENET1K_V1)
_TV_WEIGHTS = re.compile(r"^(\w+_Weights(\.\w+)?|IMAGENET1K_\w+|DEFAULT)$")


def _no_download(value: str, key: str = "") -> str:
    """The one-line refusal of a torchvision weights name: nothing is downloaded here."""
    return (
        f"{key + '=' if key else ''}{value!r} names torchvision weights, and nothing is "
        "downloaded here; save them where a download works (torch.save(torchvision.models."
        "resnet18(weights=...).state_dict(), 'resnet18.pth')) and set model.from to that "
        "local .pth/.safetensors file, or to a trained run folder"
    )


class UnfreezeStep(Section):
    """One step of a gradual unfreezing (ULMFiT; fastai's ``unfreeze``): from epoch ``epoch``
    on, the head plus the last ``blocks`` backbone blocks train (``all``: every parameter)."""

    epoch: int = Field(
        ge=1, description="epochs trained before this step applies (1: from the second epoch)"
    )
    blocks: int | Literal["all"] = Field(
        "all",
        description="backbone blocks (top-level child modules with parameters, counted from "
        "the head) that train from then on; all: everything",
    )

    @field_validator("blocks")
    @classmethod
    def _some_blocks(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"expected a number of blocks >= 1 or all, got {value}")
        return value


class FreezeConfig(Section):
    """The pretrained backbone is frozen (no update, no weight decay) and only the head and
    the layers ``model.from`` did not fill train, until the ``unfreeze`` steps say otherwise.

    ``freeze: N`` is short for ``{unfreeze: [{epoch: N, blocks: all}]}``: fastai's
    ``fine_tune(freeze_epochs=N)``. ``freeze: {}`` keeps the backbone frozen for the whole run
    (a linear probe, when the head is one layer).
    """

    unfreeze: list[UnfreezeStep] = Field(
        default_factory=list,
        description="[{epoch: E, blocks: N|all}, ...] in increasing epochs and blocks; "
        "empty: frozen for the whole run",
    )
    bn_eval: bool = Field(
        False,
        description="frozen batch-norm layers run in eval mode: their running statistics stay "
        "the pretrained ones (false: they keep adapting to the new data; their affine weights "
        "are frozen either way)",
    )

    @model_validator(mode="before")
    @classmethod
    def _epochs_shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"unfreeze": [{"epoch": value, "blocks": "all"}]}
        return value

    @field_validator("unfreeze")
    @classmethod
    def _increasing(cls, steps: list[UnfreezeStep]) -> list[UnfreezeStep]:
        """Each step unfreezes more, later: a step that froze again would undo the last."""
        for before, after in zip(steps, steps[1:], strict=False):
            more = before.blocks != "all" and (
                after.blocks == "all" or after.blocks > before.blocks
            )
            if after.epoch <= before.epoch or not more:
                raise ValueError(
                    "steps must come in increasing epochs, each unfreezing more blocks than the "
                    f"one before (got epoch {before.epoch} blocks {before.blocks}, then epoch "
                    f"{after.epoch} blocks {after.blocks})"
                )
        return steps


class ModelConfig(Section):
    """Architecture plus the one-time-setup choices every model takes from the recipe."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, allow_inf_nan=False, serialize_by_alias=True
    )

    name: str = "mlp"
    widths: list[int] = Field(default_factory=lambda: [128], description="mlp hidden widths")
    channels: list[int] = Field(
        default_factory=lambda: [32, 64], description="convnet/resnet width of each stage"
    )
    depth: int = Field(2, ge=1, description="convs (convnet) or blocks (resnet) per stage")
    kernel_size: int = Field(3, ge=1)
    activation: ActivationSpec = Field(default_factory=lambda: ActivationSpec(name="relu"))
    norm: NormSpec = Field(default_factory=lambda: NormSpec(name="none"))
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="DROP probability of each unit (torch's p; the lecture's p is the keep "
        "probability): 0.2, {drop: 0.2} or {keep: 0.8}, stored as the drop probability; "
        "inverted dropout, identity at eval",
    )
    dropconnect: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="DropConnect: drop probability of each weight of every Linear/Conv layer",
    )
    pool: Literal["max", "avg", "fractional"] = Field(
        "max", description="convnet downsampling: 2x2 max, 2x2 average or fractional max pooling"
    )
    pool_ratio: float = Field(
        2**-0.5,
        ge=0.5,
        lt=1.0,
        description="pool=fractional: output/input size per stage (Graham's 1/alpha; 1/sqrt 2)",
    )
    stochastic_depth: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="DROP probability of the LAST residual block's branch, 1 - p_L; block l of L "
        "is dropped with probability l/L times this (residual models only)",
    )
    init: InitSpec = Field(
        description="default: kaiming_normal for trainlab's models, keep (the constructor's "
        "own weights) for torchvision's and your own"
    )
    zero_init_residual: bool = False
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="torchvision/user class args (num_classes and in_shape come from the data)",
    )
    from_: str | None = Field(
        None,
        alias="from",
        description="transfer learning: start from a trained run folder's final weights or a "
        "local .safetensors/.pth/.pt state dict; tensors whose names and shapes match are "
        "loaded, the rest (the head, when the classes differ) keep their fresh init; the new "
        "data's own preprocessing is fitted as usual",
    )
    freeze: FreezeConfig | None = Field(
        None,
        description="train only the head (and what model.from did not fill) at first: "
        "N (epochs, then everything) or {unfreeze: [{epoch, blocks}], bn_eval}",
    )

    @field_validator("from_")
    @classmethod
    def _local_weights(cls, value: str | None) -> str | None:
        """A run folder or a weights file; a torchvision weights name is refused (no download)."""
        if value is None:
            return value
        if not value.strip():
            raise ValueError("expected a run folder or a .safetensors/.pth/.pt file, got ''")
        if _TV_WEIGHTS.match(value):
            raise ValueError(_no_download(value))
        suffix = Path(value).suffix
        if suffix and suffix not in WEIGHT_SUFFIXES and not Path(value).is_dir():
            raise ValueError(
                f"{value!r}: expected a run folder or a {'/'.join(WEIGHT_SUFFIXES)} file"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_init(cls, data: Any) -> Any:
        """The init default depends on whose model it is: a user's class and torchvision's
        models keep their own init (overwriting it silently would change the user's model)."""
        if isinstance(data, dict) and data.get("init") is None:
            name = str(data.get("name", "mlp"))
            foreign = ":" in name or name.startswith("tv.")
            data = {**data, "init": "keep" if foreign else "kaiming_normal"}
        return data

    @model_validator(mode="after")
    def _own_kwargs(self) -> ModelConfig:
        """``model.kwargs`` must not set what trainlab passes itself (or downloads)."""
        foreign = ":" in self.name or self.name.startswith("tv.")
        for key in ("num_classes", "in_shape"):
            if key in self.kwargs:
                raise ValueError(
                    f"model.kwargs.{key}: trainlab passes {key} from the data; remove it"
                )
        if self.name.startswith("tv.") and "weights" in self.kwargs:
            raise ValueError(_no_download(str(self.kwargs["weights"]), "model.kwargs.weights"))
        if self.freeze is not None and self.from_ is None:
            raise ValueError(
                "model.freeze freezes pretrained layers: set model.from to a run folder or a "
                "weights file (a frozen random backbone learns nothing)"
            )
        if self.kwargs and not foreign:
            raise ValueError(
                f"model.kwargs: {self.name!r} takes its settings from the model section's own "
                "keys; kwargs are passed to torchvision's and your own classes only"
            )
        return self

    @field_validator("dropout", mode="before")
    @classmethod
    def _drop_or_keep(cls, value: Any) -> Any:
        """``{drop: p}`` or ``{keep: q}`` to the drop probability (``q`` is the lecture's p)."""
        if not isinstance(value, dict):
            return value
        if set(value) == {"drop", "keep"}:
            raise ValueError(f"give drop or keep (keep = 1 - drop), not both; got {value}")
        if set(value) == {"keep"}:
            keep = value["keep"]
            if isinstance(keep, bool) or not isinstance(keep, int | float) or not 0 < keep <= 1:
                raise ValueError(f"keep is the keep probability, in (0, 1]; got {keep!r}")
            return round(1.0 - keep, 12)  # 0.8 -> 0.2, not 0.19999999999999996
        if set(value) == {"drop"}:
            return value["drop"]
        raise ValueError(
            f"expected a drop probability p, {{drop: p}} or {{keep: 1 - p}}; got {value}"
        )

    @field_validator("widths", "channels")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v <= 0 for v in values):
            raise ValueError(f"every width must be a positive integer, got {values}")
        return values

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        registry = _registry("model")
        if name not in registry and ":" not in name and not name.startswith("tv."):
            raise ValueError(
                registry.unknown_message(name)
                + " (or tv.NAME for torchvision, package.module:Class for your own)"
            )
        return name


class OptimizerConfig(Named):
    """torch.optim underneath; ``lr`` is given for ``base_batch_size`` and scaled if asked."""

    kind: ClassVar[str] = "optimizer"
    own_fields: ClassVar[tuple[str, ...]] = (
        "lr", "weight_decay", "base_batch_size", "lr_scaling", "pretrained_lr_scale", "fused"
    )  # fmt: skip
    name: str = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    pretrained_lr_scale: float = Field(
        1.0,
        gt=0.0,
        description="discriminative learning rates: the layers loaded from model.from train "
        "at lr times this (e.g. 0.1), the head and other new layers at lr",
    )
    weight_decay: float = Field(0.0, ge=0.0, description="decoupled weight decay (AdamW style)")
    base_batch_size: int | None = Field(None, gt=0)
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    fused: bool | Literal["auto"] = Field(
        "auto",
        description="torch's fused kernel (one launch a step for every weight); auto: on CUDA, "
        "for the optimisers that have one (sgd, momentum, nesterov, adagrad, adam, adamw)",
    )


class ScheduleConfig(Named):
    """Learning-rate multiplier as a pure function of the step, after an optional linear warm-up."""

    kind: ClassVar[str] = "schedule"
    own_fields: ClassVar[tuple[str, ...]] = ("warmup_epochs", "warmup_steps")
    name: str = "constant"
    warmup_epochs: float = Field(0.0, ge=0.0)
    warmup_steps: int = Field(0, ge=0)

    def problems_with(self, data: DataConfig) -> list[str]:
        """What this schedule needs from the other sections: a schedule that reads the
        validation metric (``reduce_on_plateau``) needs a validation split."""
        reads_val = _registry("schedule").get(self.name).info.get("plateau", False)
        if reads_val and data.val_fraction == 0:
            return [
                f"schedule.name={self.name} reads the validation metric "
                f"({self.params().get('metric')}): data.val_fraction is 0"
            ]
        return []


class RegularizationConfig(Section):
    """Penalties added to the loss. Decoupled weight decay lives in ``optimizer.weight_decay``."""

    l2: float = Field(0.0, ge=0.0, description="adds l2/2 * sum(w^2) to the loss")
    l1: float = Field(
        0.0, ge=0.0, description="adds l1 * sum|w| to the loss (with l2: the elastic net)"
    )
    decay_bias_and_norm: bool = Field(
        False, description="also penalise/decay biases and normalisation parameters"
    )


class EarlyStoppingConfig(Section):
    """Stop when the validation metric has not improved for ``patience`` evaluations."""

    metric: Literal["val_loss", "val_acc"] = "val_loss"
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = True


class EmaConfig(Section):
    """An exponential moving average (Polyak average) of the weights, used for validation,
    the best checkpoint, the saved model and the test figures (see ``engine.ema``)."""

    decay: float = Field(
        0.999, gt=0.0, lt=1.0, description="weight of the average kept at each update (rho)"
    )
    every: int = Field(1, ge=1, description="update the average every N optimiser steps")
    warmup: bool = Field(
        True,
        description="decay warm-up: use min(decay, (1+n)/(10+n)) at the n-th update, so the "
        "average forgets the initial weights quickly",
    )


class TrainingConfig(Section):
    """How long, how many examples per step, and the numerics of each step."""

    epochs: int = Field(10, gt=0)
    max_steps: int | None = Field(
        None, gt=0, description="train exactly this many steps (instead of training.epochs)"
    )
    batch_size: int = Field(64, gt=0, description="examples a step (a process's, under torchrun)")
    drop_last: bool = True
    grad_clip: float | None = Field(None, gt=0.0, description="max global gradient norm")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="autocast dtype; fp16 scales the loss (GradScaler); auto: bf16 on CUDA, fp16 "
        "on a CUDA device without bf16, else fp32",
    )
    compile: bool | Literal["inductor", "aot_eager", "eager"] = Field(
        False,
        description="train the model under torch.compile (true: inductor); if it cannot compile, "
        "one warning and eager training",
    )
    channels_last: bool = Field(
        False, description="images in channels-last memory order (faster convolutions on GPUs)"
    )
    device: str = "auto"
    deterministic: bool | Literal["warn"] = Field(
        False,
        description="torch deterministic algorithms: true refuses an op without a deterministic "
        "kernel, warn runs it with a warning",
    )
    nonfinite: Literal["stop", "rollback", "ignore"] = Field(
        "stop",
        description="on a NaN/inf loss or gradient stop before that update, or roll back to "
        "the last good state and skip the batch (checked lazily: no per-step cost)",
    )
    nonfinite_retries: int = Field(3, ge=1, description="rollbacks allowed before stopping")
    sync_bn: bool = Field(
        False,
        description="under torchrun: batch norm over the global batch (SyncBatchNorm, GPUs)",
    )
    early_stopping: EarlyStoppingConfig | None = None
    ema: EmaConfig | None = Field(
        None, description="average the weights during training (decay, every, warmup)"
    )
    log_every: int = Field(20, gt=0, description="steps between logged training metrics")
    loggers: list[Literal["jsonl", "csv", "tensorboard"]] = Field(
        default_factory=lambda: ["jsonl"],
        description="where metrics go: jsonl (metrics.jsonl, always written), csv (metrics.csv), "
        "tensorboard (RUN/tensorboard; pip install 'trainlab[tensorboard]')",
    )
    checkpoint_every: int = Field(1, gt=0, description="epochs between 'last' checkpoints")
    checkpoint_every_steps: int = Field(
        0, ge=0, description="also save 'last' every N steps inside an epoch (0: off)"
    )
    progress: bool = True
    monitor_every: int = Field(
        0, ge=0, description="per-layer activation/gradient statistics every N steps (0: off)"
    )
    snapshots: bool = Field(
        False, description="save the weights at the end of each SGDR cycle (snapshot ensemble)"
    )

    @field_validator("ema", mode="before")
    @classmethod
    def _ema_shorthand(cls, value: Any) -> Any:
        """``training.ema=true`` turns it on with the defaults, ``false`` leaves it off."""
        if isinstance(value, bool):
            return {} if value else None
        return value


class DistillConfig(Section):
    """Knowledge distillation (Hinton et al. 2015): the student's training loss is
    ``(1 - alpha) * loss + alpha * T^2 * KL(teacher || student)`` on T-softened probabilities;
    an ensemble teacher's softened probabilities are averaged (see ``trainlab.nn.distill``).
    Validation and test report the plain loss."""

    teacher: str | list[str] = Field(
        description="the teacher's run folder, or a list of run folders (an ensemble)"
    )
    temperature: float = Field(4.0, gt=0.0, description="T: softens both distributions")
    alpha: float = Field(
        0.9, ge=0.0, le=1.0, description="weight of the soft (teacher) term; 1 - alpha: labels"
    )
    weights: Literal["final", "best", "last"] = Field(
        "final", description="which weights of each teacher run"
    )

    @field_validator("teacher")
    @classmethod
    def _some_teacher(cls, value: str | list[str]) -> str | list[str]:
        folders = [value] if isinstance(value, str) else value
        if not folders or any(not f.strip() for f in folders):
            raise ValueError(f"expected a run folder or a list of run folders; got {value!r}")
        return value

    def teachers(self) -> list[str]:
        """The teacher run folders, one or many."""
        return [self.teacher] if isinstance(self.teacher, str) else list(self.teacher)


class EvaluationConfig(Section):
    """Validation cadence and metrics."""

    every: int = Field(1, gt=0, description="evaluate on validation every N epochs")
    batch_size: int = Field(1024, gt=0)
    topk: int | None = Field(None, gt=1, description="top-k accuracy; default 5 when C > 5")
    tta: str | None = Field(
        None,
        description="test-time augmentation for the final test figures (summary.json: tta); "
        "the policies of trainlab evaluate --tta, comma-separated",
    )


class Recipe(Section):
    """A whole training run. ``Recipe.model_validate(dict)`` or :func:`load_recipe`."""

    name: str = "run"
    seed: int = Field(0, ge=0, lt=2**63)
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    augment: list[AugmentSpec] = Field(default_factory=list)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossSpec = Field(default_factory=lambda: LossSpec(name="cross_entropy"))
    distill: DistillConfig | None = Field(
        None, description="train on a teacher run's (or ensemble's) softened probabilities"
    )
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Recipe:
        """Checks across sections, run once every field is valid; all their problems at once.

        A run folder's own recipe (validated with ``context={"trained": True}``) skips the
        refusals of new runs: a run trained before a rule existed can still be loaded.
        """
        problems = [*self._consistency_problems(), *self._warmup_problems()]
        if not (info.context or {}).get("trained"):
            problems += self._preprocess_augment_problems()
        if problems:
            raise _validation_error(type(self).__name__, [], problems)
        return self

    def _consistency_problems(self) -> list[str]:
        problems = [*self.schedule.problems_with(self.data), *self._transfer_problems()]
        if self.training.early_stopping is not None and self.data.val_fraction == 0:
            problems.append(
                "training.early_stopping needs a validation split: data.val_fraction is 0"
            )
        if self.optimizer.lr_scaling != "none" and self.optimizer.base_batch_size is None:
            problems.append(
                f"optimizer.lr_scaling={self.optimizer.lr_scaling} needs "
                "optimizer.base_batch_size (the batch size lr was chosen for)"
            )
        closure = _registry("optimizer").get(self.optimizer.name).info["optim"].needs_closure
        if self.training.monitor_every and closure:
            problems.append(
                f"training.monitor_every: {self.optimizer.name} takes full-batch steps through "
                "a closure; the layer monitor needs mini-batch steps (set it to 0)"
            )
        if self.training.snapshots and self.schedule.name != "sgdr":
            problems.append(
                f"training.snapshots saves the weights at the end of each SGDR cycle: set "
                f"schedule.name=sgdr (schedule is {self.schedule.name})"
            )
        if self.training.ema is not None and closure:
            problems.append(
                f"training.ema: {self.optimizer.name} takes full-batch steps through a closure; "
                "the weight average needs mini-batch steps (leave training.ema out)"
            )
        return problems

    def _transfer_problems(self) -> list[str]:
        """Discriminative rates need pretrained layers; an unfreeze step past the run's last
        epoch would never happen (refused, not ignored: the user decides which to change)."""
        problems = []
        if self.optimizer.pretrained_lr_scale != 1.0 and self.model.from_ is None:
            problems.append(
                "optimizer.pretrained_lr_scale scales the layers loaded from model.from; "
                "set model.from, or leave the scale at 1"
            )
        freeze, epochs = self.model.freeze, self.training.epochs
        for i, step in enumerate(freeze.unfreeze if freeze is not None else []):
            if self.training.max_steps is None and step.epoch >= epochs:
                problems.append(
                    f"model.freeze.unfreeze[{i}].epoch={step.epoch} is not below "
                    f"training.epochs={epochs}: that step would never happen"
                )
        return problems

    def _preprocess_augment_problems(self) -> list[str]:
        """Statistics fitted per input position (``per_position_scale``: standardize, pca,
        zca) beside an augmentation that moves positions (``moves_positions``): augmentation
        runs on raw inputs, so ink lands where the training std is tiny and the preprocessed
        values reach hundreds (digits then trains at chance). Mean-only centring is allowed:
        it keeps moved values within the raw range."""
        pre = self.preprocess.name
        if not _registry("preprocess").get(pre).info.get("per_position_scale"):
            return []
        augments = _registry("augment")
        moving = [
            f"augment[{i}] {spec.name}"
            for i, spec in enumerate(self.augment)
            if augments.get(spec.name).info.get("moves_positions")
        ]
        if not moving:
            return []
        return [
            f"preprocess.name={pre} with {', '.join(moving)}: per-position statistics are "
            "wrong on shifted inputs (values reach hundreds); use preprocess: per_channel"
        ]

    def _warmup_problems(self) -> list[str]:
        """A warm-up as long as the run is refused, naming both keys and the fix.

        The usual way in is a short run of a shipped recipe (``training.epochs=1`` against the
        digits recipe's one-epoch warm-up), so the message says what to add. It is not clamped
        silently: a warm-up that fills the run never reaches ``optimizer.lr``, and shortening
        it changes the schedule the recipe asked for; the user decides which one to change.
        """
        problems = []
        epochs, warmup = self.training.epochs, self.schedule.warmup_epochs
        if self.training.max_steps is None and warmup >= epochs:
            problems.append(
                f"schedule.warmup_epochs={warmup:g} is not shorter than training.epochs={epochs}: "
                f"the warm-up would fill the run; add schedule.warmup_epochs=0 (or a value below "
                f"{epochs}), or train longer"
            )
        max_steps, steps = self.training.max_steps, self.schedule.warmup_steps
        if max_steps is not None and steps >= max_steps:
            problems.append(
                f"schedule.warmup_steps={steps} is not shorter than "
                f"training.max_steps={max_steps}: the warm-up would fill the run; add "
                f"schedule.warmup_steps=0 (or a value below {max_steps}), or train longer"
            )
        return problems

    def to_yaml(self) -> str:
        return recipe_to_yaml(self)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML, every default written out, in the schema's key order."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


# ----------------------------------------------------------------------------------------------
# loading, overrides and error messages


def _parse_value(text: str) -> Any:
    """Parse an override's value as YAML (``0.1``, ``true``, ``[1, 2]``); a bad one stays text."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


Overrides = Mapping[str, Any] | Sequence[str]


def apply_overrides(raw: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """Apply overrides to a raw recipe mapping (validated afterwards, like the file): the CLI's
    ``a.b=c`` strings (values parsed as YAML) or a mapping ``{"a.b": value}`` (values as given,
    the Python API's form)."""
    if isinstance(overrides, str):
        raise RecipeError(f"overrides {overrides!r}: give a list of KEY=VALUE strings or a dict")
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            _set_key(raw, str(key), value, f"override {key!r}")
        return raw
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise RecipeError(f"override {item!r}: expected KEY=VALUE, e.g. optimizer.lr=0.01")
        _set_key(raw, key, _parse_value(text), f"override {item!r}")
    return raw


def _set_key(raw: dict[str, Any], key: str, value: Any, what: str) -> None:
    """Set the dotted ``key`` of a raw recipe mapping, making sections on the way."""
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise RecipeError(f"{what}: expected KEY=VALUE, e.g. optimizer.lr=0.01")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str):  # `activation: relu` + `activation.alpha=...`
            child = {"name": child}
        elif not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def _fields_at(loc: tuple) -> list[str]:
    """Valid keys of the section reached by ``loc`` (for did-you-mean on an unknown key)."""
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type)]
        candidates = [ann, *args]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    fields = getattr(model, "model_fields", {}) if model is not None else {}
    return [field.alias or name for name, field in fields.items()]  # model.from, not from_


def _steps_out(loc: tuple) -> tuple:
    """``loc`` without the validator steps pydantic may name in it."""
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _key_loc(err: dict[str, Any]) -> tuple:
    """The key an error is about: its ``loc`` less validator steps and union members' tags."""
    loc = _steps_out(tuple(err["loc"]))
    while (  # `bool | Literal['warn']` reports at deterministic.bool and deterministic.literal[..]
        err["type"] != "extra_forbidden"
        and len(loc) > 1
        and isinstance(loc[-1], str)
        and loc[-1] not in _fields_at(loc[:-1])
    ):
        loc = loc[:-1]
    return loc


def _problems(errors: list[dict[str, Any]]) -> list[str]:
    """One line per problem, naming its key; the errors of a union's members merge into one."""
    merged: list[dict[str, Any]] = []
    unions: dict[tuple, dict[str, Any]] = {}
    for err in errors:
        loc = _key_loc(err)
        if loc != _steps_out(tuple(err["loc"])):
            if loc in unions:  # another member of the same union
                first = unions[loc]
                first["msg"] += "; or " + err["msg"].removeprefix("Value error, ")
                first["type"] = "union"
                continue
            err = unions[loc] = {**err, "loc": loc}
        merged.append(err)
    return list(dict.fromkeys(_one_line(err) for err in merged))


def _one_line(err: dict[str, Any]) -> str:
    loc = _key_loc(err)
    path = ".".join(str(p) for p in loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        hint = closest(str(loc[-1]), _fields_at(loc[:-1]))
        parent = ".".join(str(p) for p in loc[:-1])
        if hint:
            return f"{path}: unknown key; did you mean {parent + '.' if parent else ''}{hint}?"
        return f"{path}: unknown key; valid: {', '.join(_fields_at(loc[:-1]))}"
    msg = err["msg"].removeprefix("Value error, ")
    param = re.search(r"parameter '([^']+)'", msg)
    if param:  # name the offending key itself, not only its section
        path = f"{path}.{param.group(1)}" if path else param.group(1)
    if kind == "value_error":  # our own validators already name the value
        return msg if not loc else f"{path}: {msg}"
    return f"{path}: {msg} (got {err.get('input')!r})"


def validate(raw: dict[str, Any], source: str = "recipe", *, trained: bool = False) -> Recipe:
    """Validate a raw mapping; every problem found is one line of the RecipeError, naming its key.

    Checks across sections (``schedule.warmup_epochs`` against ``training.epochs``) run once
    every field is valid: a recipe with both kinds of mistakes shows the field errors first.
    """
    try:
        return Recipe.model_validate(raw, context={"trained": trained})
    except ValidationError as exc:
        raise RecipeError.of(source, _problems(exc.errors())) from None


SHIPPED_RECIPES = DEFAULT_RECIPE.parent  # installed with the package: found from any folder


def shipped_recipes() -> list[str]:
    """The names of the recipes that ship with trainlab (``digits``, ``mnist1d``, ...); the
    search spaces beside them (``NAME_space.yaml``) are not recipes."""
    return sorted(p.stem for p in SHIPPED_RECIPES.glob("*.yaml") if not p.stem.endswith(SPACE))


SPACE = "_space"  # a shipped search space is NAME_space.yaml beside the recipe NAME.yaml


def find_recipe(path: str | Path) -> Path:
    """The file a recipe argument means: an existing path as given; a bare name (no folder, no
    ``.yaml``) that is not a file here, the shipped recipe of that name.

    So ``trainlab train mnist1d`` works from any folder, not only from a checkout that has a
    ``recipes/`` copy. An unknown bare name is refused in one line listing the shipped names;
    anything that looks like a path (a folder part or a YAML suffix) is read as a path.
    """
    file = Path(path)
    if file.exists() or len(file.parts) != 1 or file.suffix in {".yaml", ".yml"}:
        return file
    shipped = SHIPPED_RECIPES / f"{file.name}.yaml"
    if shipped.is_file() and not file.name.endswith(SPACE):
        return shipped
    raise RecipeError(
        f"{path}: no such recipe file and no shipped recipe of that name; shipped recipes: "
        f"{', '.join(shipped_recipes())} (or give the path of a YAML file)"
    )


def load_recipe(
    path: str | Path | None = None, overrides: Overrides | None = None, *, trained: bool = False
) -> Recipe:
    """Read a YAML recipe (the shipped default when ``path`` is None, a shipped one by its bare
    name: see :func:`find_recipe`), apply overrides, validate."""
    file = find_recipe(path) if path is not None else DEFAULT_RECIPE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{file}: recipe file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{file}: cannot read recipe ({type(exc).__name__})") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{file}:{where} invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{file}: a recipe must be a mapping of sections, got {type(raw).__name__}"
        )
    raw.setdefault("name", file.stem)
    return validate(apply_overrides(raw, overrides or []), source=str(file), trained=trained)


def resolve_recipe(recipe: Recipe | str | Path | None, overrides: Overrides | None) -> Recipe:
    """A validated Recipe from an object, a YAML path or the default, with overrides applied
    (``["optimizer.lr=0.01"]`` as on the command line, or ``{"optimizer.lr": 0.01}``)."""
    if isinstance(recipe, Recipe):
        if not overrides:
            return recipe
        return validate(apply_overrides(recipe.model_dump(mode="json"), overrides))
    return load_recipe(recipe, overrides)


# ----------------------------------------------------------------------------------------------
# comparing recipes (a resumed run must continue the recipe it started with)

HARMLESS_ON_RESUME = frozenset({"training.progress"})


def recipe_differences(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Every dotted key whose value differs between two recipe dumps (``model_dump(mode=
    "json")``), in the schema's order, less the keys that do not change what a run computes."""
    found: list[str] = []
    _differences(saved, given, "", found)
    return [key for key in found if key not in HARMLESS_ON_RESUME]


def _differences(a: Any, b: Any, path: str, found: list[str]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in [*a, *(k for k in b if k not in a)]:
            _differences(a.get(key), b.get(key), f"{path}.{key}" if path else str(key), found)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _differences(x, y, f"{path}[{i}]", found)
    elif a != b:
        found.append(path)


def recipe_digest(dump: Mapping[str, Any]) -> str:
    """SHA-256 of a recipe dump, stable across processes (keys sorted, JSON)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()
