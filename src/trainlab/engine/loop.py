"""The training loop: recipe -> data -> model -> optimiser/schedule -> steps -> run folder.

Read :meth:`Trainer._train_epoch` top to bottom: that is the whole step. Everything optional
(logging, progress, early stopping, checkpoints) is a callback. The step has no host sync: loss
and accuracy accumulate on the device and are read back only every ``training.log_every`` steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.data.augment import Pipeline
from trainlab.data.datasets import Splits, load_splits
from trainlab.data.loaders import DeviceLoader, WorkerLoader, eval_batches
from trainlab.data.preprocess import Preprocessor, create_preprocessor
from trainlab.engine import checkpoint as ckpt
from trainlab.engine.callbacks import (
    Callback,
    CallbackList,
    Checkpointer,
    EarlyStopping,
    MetricsLog,
    ProgressBar,
)
from trainlab.engine.signals import Interrupted, StopSignals
from trainlab.errors import NonFiniteError, RecipeError, RunFolderError, TrainlabWarning
from trainlab.evaluation.metrics import evaluate_model, hard_labels, predictions
from trainlab.nn.init import INITS
from trainlab.nn.losses import LOSSES
from trainlab.nn.models import create_model
from trainlab.optim.optimizers import (
    OPTIMIZERS,
    apply_decoupled_decay,
    create_optimizer,
    param_groups,
    scaled_lr,
)
from trainlab.optim.penalties import weight_penalty
from trainlab.optim.schedules import create_schedule
from trainlab.recipe import Recipe

__all__ = ["Trainer", "seed_everything", "pick_device", "num_outputs"]


def seed_everything(seed: int, deterministic: bool | str = False) -> None:
    """Seed Python, NumPy and torch; make torch refuse non-deterministic kernels (``True``),
    warn about them (``"warn"``), or allow them (``False``).

    Set every way, so a deterministic run does not leave the switch on for the next one.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=deterministic == "warn")
    torch.backends.cudnn.benchmark = False


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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RecipeError(f"training.device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"training.device={name!r}: no CUDA device is available here")
    return device


def num_outputs(loss_name: str, num_classes: int) -> int:
    """One logit for binary cross-entropy on two classes, else one score per class."""
    return 1 if loss_name == "bce" and num_classes == 2 else num_classes


def autocast_factory(precision: str, device: torch.device) -> Callable[[], Any]:
    """bf16 autocast where the device supports it (``auto``: CUDA with bf16 only)."""
    bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


class Trainer:
    """Owns the model, data, optimiser and counters of one run; ``fit()`` trains it."""

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        callbacks: list[Callback] | None = None,
        progress: bool = True,
    ) -> None:
        self.recipe, self.run_dir = recipe, run_dir
        tcfg = recipe.training
        seed_everything(recipe.seed, tcfg.deterministic)
        self.device = pick_device(tcfg.device)
        self.autocast = autocast_factory(tcfg.precision, self.device)
        self.splits: Splits = load_splits(recipe.data)
        for note in self.splits.notes:
            if note.startswith(("skipped", "converted")):  # changes to the data: say so
                warnings.warn(f"{self.splits.source}: {note}", TrainlabWarning, stacklevel=2)
        self.num_classes = self.splits.num_classes
        self.loss_fn = LOSSES.build(recipe.loss.name, **recipe.loss.params())
        self.eval_loss_fn = LOSSES.build(recipe.loss.name, **_no_smoothing(recipe.loss.params()))
        self.preprocess = self._fit_preprocess()
        self.model = create_model(
            recipe.model,
            self.splits.in_shape,
            num_outputs(recipe.loss.name, self.num_classes),
            sample=self._init_sample(),
        ).to(self.device)
        self.optim_info = OPTIMIZERS.get(recipe.optimizer.name).info["optim"]
        self.loader = self._make_loader()
        self.steps_per_epoch = 1 if self.optim_info.needs_closure else len(self.loader)
        self.total_steps = (
            tcfg.max_steps if tcfg.max_steps is not None else tcfg.epochs * self.steps_per_epoch
        )
        self._make_optimizer()
        self.step, self.epoch, self.best_epoch = 0, 0, 0
        self.train_seconds = 0.0  # inside training epochs: throughput excludes evaluation
        self.fit_start, self.wall_before = time.perf_counter(), 0.0  # wall_before: resumed runs
        self.tick = time.perf_counter()  # start of the current logging window (throughput)
        # the running sums of the current logging window: on the device, saved in checkpoints
        self.window_loss = torch.zeros((), device=self.device)
        self.window_correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.window_seen = 0
        self.stop_reason: str | None = None
        self.topk = recipe.evaluation.topk or (5 if self.num_classes > 5 else None)
        if self.topk is not None and self.topk >= self.num_classes:
            raise RecipeError(
                f"evaluation.topk={self.topk} must be below the number of classes "
                f"({self.num_classes})"
            )
        self._check_forward()
        self.signals = StopSignals()
        self.callbacks = CallbackList(self._default_callbacks(progress) + list(callbacks or []))

    # ------------------------------------------------------------------------------------------
    # set-up

    def _check_forward(self) -> None:
        """One forward pass on two training examples, in eval mode, before any folder exists:
        a model that does not fit the data fails here with its name, not mid-run. Under
        ``deterministic: true`` a backward pass follows, so an op without a deterministic
        kernel is named here too."""
        x = as_tensor(self.splits.x_train[:2])
        x = torch.stack([x[i] for i in range(2)]) if not isinstance(x, torch.Tensor) else x
        backward = self.recipe.training.deterministic is True
        self.model.eval()
        try:
            with torch.set_grad_enabled(backward):
                out = self.model(self.preprocess(x.to(self.device)))
                if backward and out.requires_grad:
                    out.float().sum().backward()
        except (RuntimeError, ValueError, TypeError) as exc:
            if isinstance(exc, RuntimeError) and (
                error := nondeterministic_error(exc, self.device, "in the check before training")
            ):
                raise error from None
            first = " ".join(str(exc).split())[:200]
            raise RecipeError(
                f"model.name={self.recipe.model.name!r}: a forward pass on examples of shape "
                f"{tuple(x.shape[1:])} failed ({first})"
            ) from None
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.train()
        out = out.detach()
        expected = num_outputs(self.recipe.loss.name, self.num_classes)
        if out.ndim != 2 or out.shape[1] != expected:
            raise RecipeError(
                f"model.name={self.recipe.model.name!r}: outputs have shape {tuple(out.shape)}, "
                f"expected (N, {expected}) for {self.num_classes} classes"
            )

    def _fit_preprocess(self) -> Preprocessor:
        pre = create_preprocessor(self.recipe.preprocess.name, self.recipe.preprocess.eps)
        self.raw_sample = fit_sample(self.splits.x_train, self.recipe.seed)
        return pre.fit(self.raw_sample).to(self.device)

    @torch.no_grad()
    def _init_sample(self, size: int = 256) -> torch.Tensor | None:
        """Preprocessed training inputs for a data-dependent init (LSUV), else None."""
        if not INITS.get(self.recipe.model.init.name).info.get("needs_sample"):
            return None
        return self.preprocess(self.raw_sample[:size].to(self.device))

    def _make_loader(self) -> DeviceLoader | WorkerLoader:
        data, tcfg = self.recipe.data, self.recipe.training
        augment = Pipeline.from_specs(self.recipe.augment, self.num_classes)
        augment.check(self.splits.in_shape)
        augment.fit(self.raw_sample)
        x = as_tensor(self.splits.x_train)
        y = torch.from_numpy(self.splits.y_train)
        nbytes = sum(a.nbytes for a in (self.splits.x_train, self.splits.x_val, self.splits.x_test))
        streamed = not isinstance(x, torch.Tensor)
        resident = not streamed and (
            data.loader == "device"
            or (data.loader == "auto" and nbytes <= data.max_resident_mb * 2**20)
        )
        if streamed and self.optim_info.needs_closure:
            raise RecipeError(
                f"optimizer.name={self.recipe.optimizer.name}: full-batch optimisers need the "
                "data in memory; this image folder is streamed (raise data.max_resident_mb)"
            )
        if resident:
            return DeviceLoader(
                x.to(self.device),
                y.to(self.device),
                tcfg.batch_size,
                tcfg.drop_last,
                augment,
                self.recipe.seed,
                self.preprocess,
            )
        return WorkerLoader(
            x,
            y,
            tcfg.batch_size,
            tcfg.drop_last,
            augment,
            self.recipe.seed,
            self.preprocess,
            self.device,
            data.num_workers,
        )

    def _make_optimizer(self) -> None:
        ocfg, rcfg, tcfg = self.recipe.optimizer, self.recipe.regularization, self.recipe.training
        self.base_lr = scaled_lr(ocfg.lr, tcfg.batch_size, ocfg.base_batch_size, ocfg.lr_scaling)
        self.optimizer = create_optimizer(
            ocfg.name,
            ocfg.params(),
            self.model,
            self.base_lr,
            rcfg.decay_bias_and_norm,
            ocfg.weight_decay,
        )
        scfg = self.recipe.schedule
        warmup = scfg.warmup_steps or round(scfg.warmup_epochs * self.steps_per_epoch)
        if warmup >= self.total_steps:
            raise RecipeError(
                f"schedule: warm-up of {warmup} steps is not shorter than the "
                f"{self.total_steps} training steps"
            )
        self.lr_mult = create_schedule(
            scfg.name, scfg.params(), self.base_lr, self.steps_per_epoch, warmup, self.total_steps
        )
        groups = param_groups(self.model, rcfg.decay_bias_and_norm)
        self.decay_params = [p for g in groups if g["decay"] for p in g["params"]]
        self.decoupled = any(g.get("decoupled_wd") for g in self.optimizer.param_groups)
        self.guard = self.recipe.training.nonfinite != "ignore"
        self.skip_batches: set[tuple[int, int]] = set()  # (epoch, batch) rolled back from
        self.trained_params = [p for p in self.model.parameters() if p.requires_grad]

    def _default_callbacks(self, progress: bool) -> list[Callback]:
        tcfg = self.recipe.training
        cbs: list[Callback] = [MetricsLog(self.run_dir / "metrics.jsonl")]
        if tcfg.early_stopping is not None:
            es = tcfg.early_stopping
            cbs.append(EarlyStopping(es.metric, es.patience, es.min_delta, es.restore_best))
        metric = tcfg.early_stopping.metric if tcfg.early_stopping is not None else "val_acc"
        self.checkpointer = Checkpointer(
            self.run_dir / "checkpoints",
            tcfg.checkpoint_every,
            tcfg.checkpoint_every_steps,
            metric,
        )
        if tcfg.monitor_every and self.optim_info.needs_closure:
            raise RecipeError(
                f"training.monitor_every: {self.recipe.optimizer.name} takes full-batch steps "
                "through a closure; the layer monitor needs mini-batch steps (set it to 0)"
            )
        if tcfg.monitor_every:  # before the checkpointer: a step's record is in its checkpoint
            from trainlab.diagnosis.monitor import LayerMonitor

            cbs.append(LayerMonitor(self.run_dir / "layers.jsonl", tcfg.monitor_every))
        cbs.append(self.checkpointer)
        cbs.append(ProgressBar(self.total_steps, progress and tcfg.progress))
        return cbs

    # ------------------------------------------------------------------------------------------
    # the loop

    def fit(self) -> dict[str, Any]:
        """Train to the end (or an early stop), evaluate on test, write summary.json.

        SIGTERM/SIGINT stop it at the next step boundary with a checkpoint (:class:`Interrupted`).
        """
        self.fit_start = time.perf_counter()
        self.callbacks("on_fit_start", self)
        with self.signals:
            try:
                self._epochs()
            except RuntimeError as exc:
                where = f"at step {self.step + 1}"
                if error := nondeterministic_error(exc, self.device, where):
                    raise error from None
                raise
            finally:
                self.callbacks("on_fit_end", self)
        return self._finish()

    def _epochs(self) -> None:
        """Epoch after epoch: train, validate, end-of-epoch callbacks; stop when asked."""
        every = self.recipe.evaluation.every
        while self.step < self.total_steps and not self.stop_reason:
            self.callbacks("on_epoch_start", self)
            tick = time.perf_counter()
            try:
                self._train_epoch()
            except NonFiniteError as exc:
                if exc.position is None or self.recipe.training.nonfinite != "rollback":
                    raise
                self._rollback(exc)
                continue
            finally:
                self.train_seconds += time.perf_counter() - tick
            last = self.step >= self.total_steps or self.epoch + 1 == self.recipe.training.epochs
            if len(self.splits.x_val) and ((self.epoch + 1) % every == 0 or last):
                self.callbacks("on_eval_end", self, self.evaluate_split("val"))
            self.callbacks("on_epoch_end", self)
            self._stop_on_signal(epoch_done=True)
            self.epoch += 1

    def _rollback(self, error: NonFiniteError) -> None:
        """Policy ``rollback``: reload the last good checkpoint, skip the batch that produced the
        NaN/inf from then on, and go on; at most ``training.nonfinite_retries`` times."""
        retries = self.recipe.training.nonfinite_retries
        last = self.run_dir / "checkpoints" / "last"
        if len(self.skip_batches) >= retries or not last.is_file():
            raise error
        bad, wall, trained = error.position, self.wall_seconds(), self.train_seconds
        self.resume()
        self.skip_batches.add(bad)
        self.fit_start, self.wall_before, self.train_seconds = time.perf_counter(), wall, trained
        warnings.warn(
            f"{error}; rolled back to step {self.step} and skipping that batch from now on "
            f"(retry {len(self.skip_batches)} of {retries})",
            TrainlabWarning,
            stacklevel=2,
        )

    def _stop_on_signal(self, epoch_done: bool) -> None:
        """After a SIGTERM/SIGINT: save ``last`` here (a step boundary) and raise Interrupted."""
        if self.signals.received is None:
            return
        self.checkpointer.save_last(self, epoch_done)
        raise Interrupted(self.signals.received, self.step, self.run_dir)

    def _train_epoch(self) -> None:
        model, opt, loss_fn = self.model, self.optimizer, self.loss_fn
        model.train()
        if self.optim_info.needs_closure:
            return self._full_batch_step()
        clip = self.recipe.training.grad_clip
        log_every = self.recipe.training.log_every
        spe = self.steps_per_epoch
        start = self.step - self.epoch * spe  # > 0 when resuming mid-epoch
        loss_sum, correct = self.window_loss, self.window_correct
        self.tick = time.perf_counter() if self.window_seen == 0 else self.tick
        for xb, yb in self.loader.epoch(self.epoch, start):
            if (
                self.skip_batches
                and (self.epoch, self.step - self.epoch * spe) in self.skip_batches
            ):
                self.step += 1  # rolled back from a NaN/inf here: no update for this batch
                continue
            lr = self._set_lr()
            with self.autocast():
                scores = model(xb)
            loss = loss_fn(scores.float(), yb)
            opt.zero_grad(set_to_none=True)
            if self.decay_penalty:
                (loss + self._penalty()).backward()
            else:
                loss.backward()
            norm = None
            if clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
            if self.guard:
                self._refuse_nonfinite(loss, norm)
            if self.decoupled:
                apply_decoupled_decay(opt)
            opt.step()
            self.step += 1
            self.window_seen += len(yb)
            loss_sum.add_(loss.detach(), alpha=len(yb))
            correct.add_((predictions(scores.detach()) == hard_labels(yb)).sum())
            if self.step % log_every == 0 or self.step >= self.total_steps:
                self.tick = self._log(loss_sum, correct, self.window_seen, lr, self.tick)
                self.window_seen = 0
            self.callbacks("on_batch_end", self)
            self._stop_on_signal(epoch_done=False)
            if self.step >= self.total_steps:
                break

    def _full_batch_step(self) -> None:
        """One L-BFGS step on the whole training split (no noise, as the lecture advises)."""
        x, y = self.loader.full_batch()
        lr = self._set_lr()

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(x).float(), y)
            total = loss + self._penalty() if self.decay_penalty else loss
            total.backward()
            return total

        tick = time.perf_counter()
        self.optimizer.step(closure)
        self.step += 1
        self.model.eval()  # measuring must not move batch-norm statistics or drop units
        with torch.no_grad():
            scores = self.model(x).float()
            loss_sum = self.loss_fn(scores, y) * len(y)
            correct = (predictions(scores) == hard_labels(y)).sum()
        self.model.train()
        self._log(loss_sum, correct, len(y), lr, tick)

    def _refuse_nonfinite(self, loss: torch.Tensor, norm: torch.Tensor | None) -> None:
        """Stop before the optimiser step if the loss or the gradient norm is NaN or infinite.

        This reads one boolean back from the device per step (a sync on a GPU); the weights and
        every checkpoint stay finite. ``training.nonfinite: ignore`` skips it.
        """
        if norm is None:  # the sum of the per-tensor norms is finite iff every gradient is
            grads = [p.grad for p in self.trained_params if p.grad is not None]
            norm = torch.stack(torch._foreach_norm(grads)).sum()
        if bool(torch.isfinite(loss.detach() + norm)):
            return
        if not bool(torch.isfinite(norm)):
            grads = [p.grad for p in self.trained_params if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        what = "loss" if not bool(torch.isfinite(loss)) else "gradient norm"
        value = (loss if what == "loss" else norm).detach().item()
        batch = self.step - self.epoch * self.steps_per_epoch
        last = self.run_dir / "checkpoints" / "last"
        kept = f"; the last good checkpoint is kept ({last.read_text()})" if last.is_file() else ""
        raise NonFiniteError(
            f"{what} is {value} at step {self.step + 1} (epoch {self.epoch + 1}, batch "
            f"{batch + 1} of {self.steps_per_epoch}); training stopped before the update{kept}. "
            f"Likely causes: learning rate too high (optimizer.lr={self.recipe.optimizer.lr}), "
            "bad input values in that batch, or bf16/fp16 overflow",
            position=(self.epoch, batch),
        )

    @property
    def decay_penalty(self) -> bool:
        rcfg = self.recipe.regularization
        return rcfg.l1 > 0 or rcfg.l2 > 0

    def _penalty(self) -> torch.Tensor:
        """l1 * sum|w| + l2/2 * sum w^2 over the decayed weights, added to the loss."""
        rcfg = self.recipe.regularization
        return weight_penalty(self.decay_params, rcfg.l1, rcfg.l2)

    def _set_lr(self) -> float:
        lr = self.base_lr * self.lr_mult(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _log(
        self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, lr: float, tick: float
    ) -> float:
        now = time.perf_counter()
        loss, correct_n = loss_sum.item(), correct.item()  # the host syncs of a logging window
        loss_sum.zero_()
        correct.zero_()
        record = {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "loss": loss / max(seen, 1),
            "acc": correct_n / max(seen, 1),
            "lr": lr,
            "samples_per_s": seen / max(now - tick, 1e-9),
        }
        self.callbacks("on_log", self, record)
        return now

    def stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (early stopping, pruning)."""
        self.stop_reason = reason

    # ------------------------------------------------------------------------------------------
    # evaluation, state and the end of the run

    def evaluate_split(self, split: str, confusion: bool = False):
        x = as_tensor(getattr(self.splits, f"x_{split}"))
        y = torch.from_numpy(getattr(self.splits, f"y_{split}"))
        batches = eval_batches(
            x,
            y,
            self.recipe.evaluation.batch_size,
            self.preprocess,
            self.device,
            self.recipe.data.num_workers,
        )
        metrics, conf = evaluate_model(
            self.model,
            batches,
            self.eval_loss_fn,
            self.num_classes,
            self.topk,
            split,
            self.autocast,
            confusion,
        )
        return (metrics, conf) if confusion else metrics

    def weights(self) -> dict[str, torch.Tensor]:
        """Model weights and preprocessing statistics: everything needed to predict."""
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out.update({f"preprocess.{k}": v for k, v in self.preprocess.state_dict().items()})
        return out

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        model = {k[6:]: v for k, v in weights.items() if k.startswith("model.")}
        pre = {k[11:]: v for k, v in weights.items() if k.startswith("preprocess.")}
        try:
            self.model.load_state_dict(model, strict=True)
            self.preprocess.load_state_dict(pre, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise RecipeError(
                f"checkpoint does not fit this recipe's model: {' '.join(first[:2])}"
            ) from None
        self.preprocess.to(self.device)

    def state(self, epoch_done: bool) -> dict[str, Any]:
        """Everything that decides the rest of the run (the weights are saved beside it).

        The position inside the epoch is the step itself: the data order and the augmentation
        of every batch derive from (seed, epoch, batch index).
        """
        return {
            "step": self.step,
            "epoch": self.epoch + int(epoch_done),
            "optimizer": self.optimizer.state_dict(),
            "rng": ckpt.rng_state(),
            "callbacks": self.callbacks.state_dict(),
            "window": {
                "loss": self.window_loss.cpu(),
                "correct": self.window_correct.cpu(),
                "seen": self.window_seen,
            },
            "train_seconds": self.train_seconds,
            "stop_reason": self.stop_reason,
            "wall_seconds": self.wall_seconds(),
            "skip_batches": sorted(self.skip_batches),
        }

    def wall_seconds(self) -> float:
        """Wall-clock time of the whole run so far, earlier (resumed) segments included."""
        return self.wall_before + time.perf_counter() - self.fit_start

    def resume(self) -> None:
        """Continue from the run folder's last checkpoint (weights, optimiser, RNG, callbacks)."""
        weights, state = ckpt.load_checkpoint(self.run_dir / "checkpoints", "last")
        self.load_weights(weights)
        if isinstance(self.loader, DeviceLoader):  # re-apply the restored preprocessing
            self.loader.prepare()
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise RunFolderError(
                f"{self.run_dir}: the checkpoint's optimiser state does not fit this recipe ({exc})"
            ) from None
        self.step, self.epoch = state["step"], state["epoch"]
        self.window_loss.copy_(state["window"]["loss"])
        self.window_correct.copy_(state["window"]["correct"])
        self.window_seen = state["window"]["seen"]
        self.train_seconds, self.wall_before = state["train_seconds"], state["wall_seconds"]
        self.stop_reason = state["stop_reason"]  # an early-stopped run only finishes
        self.skip_batches = {tuple(b) for b in state["skip_batches"]}
        self.callbacks.load_state_dict(state["callbacks"])
        ckpt.set_rng_state(state["rng"])

    def _finish(self) -> dict[str, Any]:
        wall = self.wall_seconds()
        samples = self.step * (
            len(self.splits.y_train) if self.optim_info.needs_closure else self.loader.batch_size
        )
        ckpt.save_weights(self.run_dir / "model.safetensors", self.weights())
        test = self.evaluate_split("test")
        summary = {
            **test,
            "best_epoch": self.best_epoch or self.epoch,
            "epochs_run": self.epoch,
            "steps": self.step,
            "wall_s": round(wall, 3),
            "samples_per_s": round(samples / max(self.train_seconds, 1e-9), 1),
            "stop_reason": self.stop_reason,
            "skipped_batches": [list(b) for b in sorted(self.skip_batches)],
            "device": str(self.device),
            "num_params": sum(p.numel() for p in self.model.parameters()),
            "run_dir": str(self.run_dir),
        }
        ckpt.atomic_write(self.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
        return summary


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


def _no_smoothing(params: dict[str, Any]) -> dict[str, Any]:
    """Evaluation reports the plain loss: label smoothing is a training-only regulariser."""
    return {k: (0.0 if k == "label_smoothing" else v) for k, v in params.items()}
