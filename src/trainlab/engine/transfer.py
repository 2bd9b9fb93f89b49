"""Transfer learning in a run: ``model.from`` (start from pretrained weights), ``model.freeze``
(train the head first, unfreeze the backbone later, block by block or at once) and, in
:mod:`trainlab.optim.optimizers`, ``optimizer.pretrained_lr_scale`` (discriminative rates).

Loading happens in ``build(recipe)``, after the model is made and before the optimiser is, so
every user of the parts (the trainer, the lr finder, the doctor) starts from the same weights.
From a run folder its final ``model.safetensors`` is read; from a file, a state dict
(``.safetensors``, or ``.pth``/``.pt`` through ``torch.load(weights_only=True)``: no code is
unpickled). Nothing is downloaded.

Preprocessing: the new run fits its own on its own training split, as every run does; the
pretrained run's statistics are not reused. The backbone's first layer was trained on
standardised inputs, and the new data standardised by its own statistics are standardised too,
while the old statistics would shift inputs of another distribution (MNIST-1D's 5-9 against
0-4) off zero mean. It also keeps the rule that a run's statistics come from its training split
only, so a run folder's ``preprocess.*`` tensors are ignored.

Freezing sets ``requires_grad`` (no gradient is computed for a frozen parameter, so its grad
stays None: the optimiser skips it, momentum and Adam's moments untouched, and decoupled weight
decay skips it too; the gradient clip and the NaN guard ignore None gradients). Which parameters
train is a pure function of the epoch, applied at each ``on_epoch_start``: a resumed run sets
the same flags at the epoch it resumes in, so it needs no saved state to be exact.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainlab.engine import checkpoint as ckpt
from trainlab.engine.callbacks import Callback
from trainlab.errors import RecipeError, RunFolderError, TrainlabWarning
from trainlab.nn.transfer import (
    backbone_blocks,
    head_module,
    head_parameters,
    load_matching,
    unwrap_state,
)

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer
    from trainlab.recipe import FreezeConfig, Recipe

__all__ = ["read_pretrained", "load_pretrained", "Freeze", "transfer_callbacks"]


def read_pretrained(source: str | Path) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """The model tensors of ``model.from`` (a run folder's final weights or a state dict file)
    and, for a run folder, the class names it was trained on (None for a file)."""
    path, classes = Path(source), None
    if path.is_dir():
        if not (path / "recipe.yaml").is_file():
            raise RunFolderError(f"model.from={source}: not a run folder (no recipe.yaml)")
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise RunFolderError(
                f"model.from={source}: the run has no model.safetensors yet (it has not "
                "finished; resume it first, or point model.from at a checkpoint's weights)"
            )
        state = ckpt.load_weights(weights)
        classes = _run_classes(path)
    elif not path.is_file():
        raise RecipeError(f"model.from={source}: no such run folder or weights file")
    elif path.suffix == ".safetensors":
        state = _read_safetensors(path)
    else:
        state = _read_torch(path)
    tensors = unwrap_state(state)
    if not tensors:
        raise RecipeError(
            f"model.from={source}: holds no state dict of tensors (save model.state_dict())"
        )
    return tensors, classes


def _run_classes(run: Path) -> list[str] | None:
    """The class names in a run folder's ``model.json`` (None for a run from before it had
    one: shapes alone then decide). A damaged one is refused: copying a head whose classes
    cannot be read could start the new run from the wrong answers."""
    path = run / "model.json"
    if not path.is_file():
        return None
    try:
        return [str(c) for c in json.loads(path.read_text())["classes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecipeError(
            f"model.from={run}: {path.name} is damaged ({type(exc).__name__}); its class names "
            "decide whether the head is kept"
        ) from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise RecipeError(f"model.from={path}: damaged safetensors file ({_first(exc)})") from None


def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch's own errors: all mean "not readable"
        if "Unsupported global" in str(exc):  # a class to import: code, refused unread
            raise RecipeError(
                f"model.from={path}: holds objects other than tensors (a whole pickled model?); "
                "save model.state_dict() instead (only tensors are loaded, no code is run)"
            ) from None
        raise RecipeError(f"model.from={path}: damaged weights file ({_first(exc)})") from None


def _first(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_pretrained(
    recipe: Recipe, model: nn.Module, classes: list[str] | None = None
) -> tuple[str, ...]:
    """Load ``model.from`` into ``model``; the names of the parameters it filled (the others,
    the head among them, keep their fresh init). One TrainlabWarning says what was loaded and
    what was not; a source of which nothing fits is refused.

    The head is loaded only when it can mean the same: its shape fits and, for a run folder,
    the run was trained on the same class names as ``classes`` (this data's). MNIST-1D's 0-4
    and 5-9 have heads of one shape, but output 0 meant "0" there and means "5" here: copying
    it would start the new task from a wrong answer, so it is initialised afresh.
    """
    source = recipe.model.from_
    if source is None:
        return ()
    tensors, trained_on = read_pretrained(source)
    absent = "not in the source"
    if trained_on is not None and classes is not None and trained_on != list(classes):
        head = head_module(model)
        prefix = f"{head}." if head else ""
        dropped = [k for k in tensors if k.startswith(prefix)]
        tensors = {k: v for k, v in tensors.items() if k not in dropped}
        absent = (
            f"a new head (the run was trained on classes {_names(trained_on)}, this data has "
            f"{_names(classes)})"
        )
    match = load_matching(model, tensors)
    if not match.loaded_parameters:
        fresh = next(iter(match.mismatched), None)
        example = (
            f" (e.g. {fresh}: {list(match.mismatched[fresh][0])} here, "
            f"{list(match.mismatched[fresh][1])} there)"
            if fresh
            else f" (the source has e.g. {match.unused[0]!r})"
            if match.unused
            else ""
        )
        raise RecipeError(
            f"model.from={source}: no tensor matches model.name={recipe.model.name} by name and "
            f"shape{example}; the source must be the same architecture"
        )
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    loaded = sum(sizes[n] for n in match.loaded_parameters)
    warnings.warn(
        f"model.from={source}: {match.summary(sum(sizes.values()), loaded, absent)}",
        TrainlabWarning,
        stacklevel=2,
    )
    return tuple(match.loaded_parameters)


def _names(classes: list[str], limit: int = 6) -> str:
    shown = ", ".join(classes[:limit])
    return shown + (f" ... ({len(classes)})" if len(classes) > limit else "")


class Freeze(Callback):
    """``model.freeze``: the pretrained backbone trains only from the ``unfreeze`` steps on.

    Trainable from the start: the head (:func:`~trainlab.nn.transfer.head_parameters`) and
    every parameter ``model.from`` did not fill. The rest are :func:`backbone_blocks`; a step
    ``{epoch: E, blocks: N}`` makes the last N of them train from epoch E (0-based: after E
    epochs). With ``bn_eval`` the batch-norm layers whose parameters are all frozen run in eval
    mode, so their running statistics stay the pretrained ones: the loop calls ``model.train()``
    before ``on_epoch_start``, and this callback puts them back to eval there.
    """

    def __init__(self, cfg: FreezeConfig) -> None:
        self.cfg = cfg
        self.blocks: list[list[str]] = []
        self.was: dict[str, bool] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        model = trainer.model
        self.was = {n: p.requires_grad for n, p in model.named_parameters()}
        pretrained = set(trainer.parts.pretrained)
        always = set(head_parameters(model)) | (set(self.was) - pretrained)
        self.blocks = backbone_blocks(model, always)

    def trainable_blocks(self, epoch: int) -> int:
        """How many backbone blocks (from the head down) train in ``epoch`` (0-based)."""
        n = 0
        for step in self.cfg.unfreeze:
            if epoch >= step.epoch:
                n = len(self.blocks) if step.blocks == "all" else step.blocks
        return min(n, len(self.blocks))

    def frozen(self, epoch: int) -> set[str]:
        """The parameter names frozen in ``epoch``."""
        keep = len(self.blocks) - self.trainable_blocks(epoch)
        return {name for block in self.blocks[:keep] for name in block}

    def on_epoch_start(self, trainer: Trainer) -> None:
        frozen = self.frozen(trainer.epoch)
        model = trainer.model
        for name, param in model.named_parameters():
            param.requires_grad_(self.was.get(name, True) and name not in frozen)
        for group in trainer.optimizer.param_groups:  # decoupled decay skips frozen weights
            group["has_frozen"] = any(not p.requires_grad for p in group["params"])
        if self.cfg.bn_eval and frozen:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and _all_frozen(module):
                    module.eval()

    def on_fit_end(self, trainer: Trainer) -> None:
        """The model is handed back as it came: every flag as before the run."""
        for name, param in trainer.model.named_parameters():
            param.requires_grad_(self.was.get(name, param.requires_grad))


def _all_frozen(module: nn.Module) -> bool:
    """A batch norm with weights, all frozen (one without affine weights is left as it is)."""
    params = list(module.parameters())
    return bool(params) and all(not p.requires_grad for p in params)


def transfer_callbacks(recipe: Recipe) -> list[Callback]:
    """The callbacks of ``model.freeze`` (none when it is off)."""
    freeze = recipe.model.freeze
    return [Freeze(freeze)] if freeze is not None else []
