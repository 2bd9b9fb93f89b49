"""The training loop: ``Trainer(parts, run_dir, callbacks).fit()`` loops, and only loops.

Everything it loops over is built by :func:`~trainlab.engine.build.build`; the update is
:class:`~trainlab.engine.step.Step`; everything optional (logging, progress, early stopping,
checkpoints, monitors, pruners) is a callback. Read :meth:`Trainer._train_epoch` top to bottom:
that is the whole epoch. A step has no host sync: loss and accuracy accumulate on the device
and are read back only every ``training.log_every`` steps, and the NaN/inf guard is checked
lazily, where state leaves the process (:mod:`trainlab.engine.guard`). Under torchrun the
step calls a DDP wrapper and the processes agree at logged steps
(:mod:`trainlab.engine.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainlab.data.inputs import input_card
from trainlab.data.loaders import DeviceLoader, eval_batches
from trainlab.engine import checkpoint as ckpt
from trainlab.engine import distributed
from trainlab.engine.best import Best
from trainlab.engine.build import Parts, as_tensor, nondeterministic_error, num_outputs
from trainlab.engine.callbacks import Callback, CallbackList, Checkpointer
from trainlab.engine.compiled import compiled
from trainlab.engine.ema import EMA
from trainlab.engine.guard import Diverged, all_finite, frozen_copy
from trainlab.engine.lock import NoLock, RunLock
from trainlab.engine.metrics import evaluate_model, hard_labels, predictions
from trainlab.engine.provenance import provenance
from trainlab.engine.result import RunResult
from trainlab.engine.seeding import rng_state, run_state, set_rng_state
from trainlab.engine.signals import Interrupted, StopSignals
from trainlab.engine.standard import standard_callbacks
from trainlab.engine.step import Step, StepOut
from trainlab.errors import NonFiniteError, RecipeError, RunFolderError, TrainlabWarning
from trainlab.files import atomic_write, remove_stale_temps
from trainlab.recipe import recipe_differences, recipe_digest, validate

__all__ = ["Trainer"]

COUNT_EVERY = 32  # steps whose correct predictions are counted together (memory: their scores)


class Trainer:
    """Loops over one run's :class:`Parts`: epochs, steps, validation, events to callbacks.

    ``callbacks`` come on top of the run folder's standard ones (metrics log, early stopping,
    checkpoints, progress bar; see :func:`standard_callbacks`), after the metrics log and before
    the checkpointer, so their state after a step is in that step's checkpoint.
    """

    def __init__(
        self,
        parts: Parts,
        run_dir: str | Path,
        callbacks: Sequence[Callback] = (),
        *,
        progress: bool = True,
        quiet: bool = False,
    ) -> None:
        if not isinstance(parts, Parts):
            raise TypeError(
                f"Trainer(parts, ...) takes trainlab.build(recipe), not {type(parts).__name__}"
            )
        self.parts, self.recipe, self.run_dir = parts, parts.recipe, Path(run_dir)
        self.model, self.optimizer, self.loader = parts.model, parts.optimizer, parts.loader
        self.splits, self.preprocess, self.device = parts.splits, parts.preprocess, parts.device
        self.steps_per_epoch, self.total_steps = parts.steps_per_epoch, parts.total_steps
        self.update = Step.of(parts)
        # torchrun: this process's rank; rank 0 alone writes; the step calls a DDP wrapper
        self.rank, self.world = distributed.world()
        self.is_writer = self.rank == 0
        self.agreed_stop = False  # under DDP: a stop signal agreed on at a logged step
        if self.world > 1:
            self.update.model = self._ddp_model()
        self.update.model = compiled(self.update.model, self.recipe.training.compile)
        # training.nonfinite: checked lazily where state leaves the process (engine/guard.py);
        # the step's own per-step guard is on only while replaying up to a step found bad
        self.lazy_guard = self.recipe.training.nonfinite != "ignore" and not parts.needs_closure
        self.update.guard = False
        self.strict_until = 0  # replaying with the per-step guard on until this step
        self.replayed: set[int] = set()  # steps a lazy check found bad (each replayed once)
        self.initial: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        self.step, self.epoch = 0, 0
        es = self.recipe.training.early_stopping
        self.best = Best(es.metric, es.min_delta) if es is not None else Best("val_acc")
        self.last_val: dict[str, float] = {}
        self.train_seconds = 0.0  # inside training epochs: throughput excludes evaluation
        self.fit_start, self.wall_before = time.perf_counter(), 0.0  # wall_before: resumed runs
        self.tick = time.perf_counter()  # start of the current logging window (throughput)
        # the running sums of the current logging window: on the device, saved in checkpoints
        self.window_loss = torch.zeros((), device=self.device)
        self.window_correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.window_seen = 0
        # steps whose correct predictions are not counted yet: (scores, targets), counted in one
        # go every COUNT_EVERY steps and before the window is read (four kernels a step fewer)
        self.uncounted: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.stop_reason: str | None = None
        self.skip_batches: set[tuple[int, int]] = set()  # (epoch, batch) rolled back from
        self.rng = parts.rng  # the run's RNG state that fit() starts from
        self.signals = StopSignals()
        # one writer per run folder, from resume() or fit(); under DDP, rank 0
        self.lock = RunLock(self.run_dir) if self.is_writer else NoLock()
        self.resumed = False
        cbs = standard_callbacks(
            self.recipe,
            self.run_dir,
            self.total_steps,
            progress,
            callbacks,
            quiet=quiet,
            writer=self.is_writer,
        )
        self.checkpointer = next(cb for cb in cbs if isinstance(cb, Checkpointer))
        self.ema = next((cb for cb in cbs if isinstance(cb, EMA)), None)  # training.ema
        self.callbacks = CallbackList(cbs)

    def _ddp_model(self) -> torch.nn.Module:
        """The DDP wrapper the step calls, after refusing what it cannot train."""
        recipe, where = self.recipe, f"under torchrun ({self.world} processes)"
        if self.parts.needs_closure:
            raise RecipeError(f"optimizer.name={recipe.optimizer.name}: full-batch, not {where}")
        if recipe.model.freeze is not None:
            raise RecipeError(f"model.freeze: not {where} (DDP needs every weight trained)")
        if recipe.training.sync_bn and self.device.type != "cuda":
            raise RecipeError(f"training.sync_bn: SyncBatchNorm needs GPUs, not {self.device}")
        return distributed.wrap(self.model, self.device, recipe.training.sync_bn)

    @property
    def num_classes(self) -> int:
        return self.parts.num_classes

    @property
    def best_epoch(self) -> int:
        return self.best.epoch

    # ------------------------------------------------------------------------------------------
    # the loop

    def fit(self) -> RunResult:
        """Train to the end (or an early stop), evaluate on test, write summary.json.

        Runs inside the run's own RNG streams and determinism switches; the caller's are put
        back when it returns or raises. SIGTERM/SIGINT stop it at the next step boundary with a
        checkpoint (:class:`Interrupted`).
        """
        self.lock.acquire()
        try:
            with run_state(self.rng, self.recipe.training.deterministic):
                self._claim_run_dir()
                self.fit_start = time.perf_counter()
                self.callbacks("on_fit_start", self)
                if self.lazy_guard and not ckpt.has_checkpoint(self.run_dir / "checkpoints"):
                    self.initial = frozen_copy(self.weights(), self.state(epoch_done=False))
                with self.signals:
                    try:
                        self._epochs()
                    except BaseException as exc:
                        self._end_callbacks_after(exc)
                        where = f"at step {self.step + 1}"
                        if isinstance(exc, RuntimeError) and (
                            error := nondeterministic_error(exc, self.device, where)
                        ):
                            raise error from None
                        raise
                    self.callbacks("on_fit_end", self)
                return self._finish()
        finally:
            self.lock.release()

    def _end_callbacks_after(self, error: BaseException) -> None:
        """``on_fit_end`` (files closed, best weights restored) while ``error`` stops the run;
        a second failure there (closing a log on the same full disk) must not hide the first,
        so it is only warned about."""
        try:
            self.callbacks("on_fit_end", self)
        except Exception as exc:  # noqa: BLE001  (reported, and ``error`` is raised after)
            warnings.warn(
                f"while stopping on {type(error).__name__}: {type(exc).__name__}: {exc}",
                TrainlabWarning,
                stacklevel=3,
            )

    def _claim_run_dir(self) -> None:
        """Under the lock: refuse to start afresh over another run's checkpoints, remove what
        killed saves left behind, and write the run card."""
        if not self.is_writer:
            return
        checkpoints = self.run_dir / "checkpoints"
        if not self.resumed and ckpt.has_checkpoint(checkpoints):
            raise RunFolderError(
                f"{self.run_dir}: holds a checkpoint of another run (written since this one was "
                "set up); resume it with --resume, or train into another --out"
            )
        remove_stale_temps(self.run_dir, checkpoints)
        self._write_run_card()

    def _epochs(self) -> None:
        """Epoch after epoch: train, validate, end-of-epoch callbacks; stop when asked."""
        every = self.recipe.evaluation.every
        while self.work_left() and not self.stop_reason:
            self.model.train()  # before the callbacks: model.freeze puts frozen BN back to eval
            self.callbacks("on_epoch_start", self)
            tick = time.perf_counter()
            try:
                self._train_epoch()
            except Diverged as late:
                self._replay(late.step)
                continue
            except NonFiniteError as exc:
                if exc.position is None and self.lazy_guard:  # weights refused by a save
                    self._replay(self.step)
                    continue
                if exc.position is None or self.recipe.training.nonfinite != "rollback":
                    raise
                self._rollback(exc)
                continue
            finally:
                self.train_seconds += time.perf_counter() - tick
            last = self.step >= self.total_steps or self.epoch + 1 == self.recipe.training.epochs
            if len(self.splits.x_val) and ((self.epoch + 1) % every == 0 or last):
                with self.averaged():  # the best checkpoint, early stopping: the same weights
                    self.last_val = self.evaluate_split("val")
                    self.best.update(self.last_val, self.epoch + 1, self.step)
                    self.callbacks("on_eval_end", self, self.last_val)
            self.callbacks("on_epoch_end", self)
            self._stop_on_signal(epoch_done=True)
            self.epoch += 1
            if self.initial is not None and ckpt.has_checkpoint(self.run_dir / "checkpoints"):
                self.initial = None  # a good state is on disk now

    def work_left(self) -> bool:
        """Steps are left, or the last steps' epoch has not had its end (validation, callbacks,
        checkpoint): a run stopped between its final step and the end of that epoch finishes
        the epoch on resume instead of skipping it."""
        return self.step < self.total_steps or self.step > self.epoch * self.steps_per_epoch

    def _train_epoch(self) -> None:
        if self.step >= self.total_steps:
            return  # resumed after the final step: only the epoch's end is left
        if self.parts.needs_closure:
            return self._full_batch_step()
        log_every = self.recipe.training.log_every
        spe, lr_at, update = self.steps_per_epoch, self.parts.lr, self.update
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
            lr = lr_at(self.step)
            out = update(xb, yb, lr)
            if not out.updated:
                raise self._nonfinite(out)
            self.step += 1
            self.window_seen += len(yb)
            loss_sum.add_(out.loss, alpha=len(yb))
            self.uncounted.append((out.scores, yb))
            if len(self.uncounted) >= COUNT_EVERY:
                self._count_correct()
            if self.step % log_every == 0 or self.step >= self.total_steps:
                self._count_correct()
                self.tick = self._log(loss_sum, correct, self.window_seen, lr, self.tick)
                self.window_seen = 0
            self.callbacks("on_batch_end", self)
            self._stop_on_signal(epoch_done=False)
            if self.strict_until and self.step >= self.strict_until:
                self.update.guard, self.strict_until = False, 0  # replayed past it: lazy again
            if self.step >= self.total_steps:
                break
        self.verify_finite(weights=True)  # before validation, best and last see the weights

    def _count_correct(self) -> None:
        """Adds the uncounted steps' correct predictions to the window: four kernels for up to
        COUNT_EVERY steps instead of four a step. Integer counts, so where it happens does not
        change a figure (exact resume)."""
        if not self.uncounted:
            return
        scores = torch.cat([s for s, _ in self.uncounted])
        targets = torch.cat([t for _, t in self.uncounted])
        self.window_correct.add_((predictions(scores) == hard_labels(targets)).sum())
        self.uncounted.clear()

    def _full_batch_step(self) -> None:
        """One L-BFGS step on the whole training split (no noise, as the lecture advises)."""
        x, y = self.loader.full_batch()
        lr = self.parts.lr(self.step)
        tick = time.perf_counter()
        out = self.update.full_batch(x, y, lr)
        self.step += 1
        correct = (predictions(out.scores) == hard_labels(y)).sum()
        self._log(out.loss * len(y), correct, len(y), lr, tick)

    def _nonfinite(self, out: StepOut) -> NonFiniteError:
        """The error for a step the guard refused: what was non-finite, where, and what is kept."""
        loss_bad = not bool(torch.isfinite(out.loss))
        what = "loss" if loss_bad else "gradient norm"
        value = (out.loss if loss_bad else out.norm).item()
        batch = self.step - self.epoch * self.steps_per_epoch
        last = self.run_dir / "checkpoints" / "last"
        kept = f"; the last good checkpoint is kept ({last.read_text()})" if last.is_file() else ""
        return NonFiniteError(
            f"{what} is {value} at step {self.step + 1} (epoch {self.epoch + 1}, batch "
            f"{batch + 1} of {self.steps_per_epoch}); training stopped before the update{kept}. "
            f"Likely causes: learning rate too high (optimizer.lr={self.recipe.optimizer.lr}), "
            "bad input values in that batch, or bf16/fp16 overflow",
            position=(self.epoch, batch),
        )

    def _rollback(self, error: NonFiniteError) -> None:
        """Policy ``rollback``: reload the last good checkpoint, skip the batch that produced the
        NaN/inf from then on, and go on; at most ``training.nonfinite_retries`` times."""
        retries = self.recipe.training.nonfinite_retries
        if len(self.skip_batches) >= retries or not self._go_back():
            raise error
        self.skip_batches.add(error.position)
        warnings.warn(
            f"{error}; rolled back to step {self.step} and skipping that batch from now on "
            f"(retry {len(self.skip_batches)} of {retries})",
            TrainlabWarning,
            stacklevel=2,
        )

    def _replay(self, step: int) -> None:
        """A lazy check found a non-finite loss or weight by ``step``: go back to the last good
        state and train again up to ``step`` with the per-step guard on, so that it stops (or
        rolls back) at the exact batch, before that batch's update (engine/guard.py)."""
        if step in self.replayed or not self._go_back():  # not reproduced, or nowhere to go
            raise NonFiniteError(
                f"the loss or the weights became NaN or infinite by step {step} (epoch "
                f"{self.epoch + 1}); training stopped and nothing non-finite was saved. Likely "
                f"causes: learning rate too high (optimizer.lr={self.recipe.optimizer.lr}), bad "
                "input values, or bf16/fp16 overflow"
            )
        self.replayed.add(step)
        self.update.guard, self.strict_until = True, step

    def _go_back(self) -> bool:
        """Reload the last good state: the last checkpoint, else the run's start held in memory
        (False when there is neither); the RNG stream and the run's clocks go on from there."""
        if (self.run_dir / "checkpoints" / "last").is_file():
            source = ckpt.load_checkpoint(self.run_dir / "checkpoints", "last")
        elif self.initial is not None:
            source = frozen_copy(*self.initial)  # loading may alias: keep the original intact
        else:
            return False
        wall, trained = self.wall_seconds(), self.train_seconds
        self._load(*source)
        set_rng_state(self.rng)  # inside fit: the saved stream continues from here
        self.fit_start, self.wall_before, self.train_seconds = time.perf_counter(), wall, trained
        return True

    def verify_finite(self, weights: bool = False) -> None:
        """The lazy guard's check (one host sync): the logging window's loss sum is finite and,
        with ``weights``, every trained weight; else :class:`Diverged`, and the loop replays.
        Called where state leaves the process: saves, snapshots, logs, the end of an epoch."""
        if not self.lazy_guard:
            return
        window = distributed.all_sum(self.window_loss.clone())  # DDP: every process's losses
        if not all_finite([window, *(self.update.trained if weights else ())]):
            raise Diverged(self.step)

    def _stop_on_signal(self, epoch_done: bool) -> None:
        """After a SIGTERM/SIGINT: save ``last`` here (a step boundary) and raise Interrupted."""
        received = self.signals.received
        if not (self.agreed_stop if self.world > 1 else received is not None):
            return  # under DDP every process stops at the logged step that agreed on it
        self.checkpointer.save_last(self, epoch_done)
        raise Interrupted(received or signal.SIGTERM, self.step, self.run_dir, self.world)

    def _log(
        self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, lr: float, tick: float
    ) -> float:
        now = time.perf_counter()
        if self.world > 1:  # the window over every process; a stop signal on any stops all
            loss, correct_n, seen = self._agree(loss_sum, correct, seen)
        else:
            loss, correct_n = loss_sum.item(), correct.item()  # the host syncs of a window
        if self.lazy_guard and not math.isfinite(loss):
            raise Diverged(self.step)  # before the log gets it
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

    def _agree(
        self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int
    ) -> tuple[float, int, int]:
        """DDP: the window's sums over the processes, and whether any got a stop signal (one
        all-reduce, at a logged step, which every process reaches at the same step)."""
        local = [
            loss_sum.double(),
            correct.double(),
            torch.tensor(float(seen), dtype=torch.float64, device=self.device),
            torch.tensor(
                float(self.signals.received is not None), dtype=torch.float64, device=self.device
            ),
        ]
        loss, correct_n, seen_all, stops = distributed.all_sum(torch.stack(local)).tolist()
        self.agreed_stop = self.agreed_stop or stops > 0
        return loss, int(correct_n), int(seen_all)

    def stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (early stopping, pruning)."""
        self.stop_reason = reason

    # ------------------------------------------------------------------------------------------
    # evaluation, state and the end of the run

    def evaluate_split(self, split: str, confusion: bool = False):
        """Loss, accuracy and top-k of the current weights on ``train``, ``val`` or ``test``."""
        x = as_tensor(getattr(self.splits, f"x_{split}"))
        y = torch.from_numpy(getattr(self.splits, f"y_{split}"))
        recipe = self.recipe
        batches = eval_batches(
            x, y, recipe.evaluation.batch_size, self.preprocess, self.device,
            recipe.data.num_workers,
        )  # fmt: skip
        metrics, conf = evaluate_model(
            self.model, batches, self.parts.eval_loss_fn, self.num_classes, self.parts.topk,
            split, self.parts.autocast, confusion,
        )  # fmt: skip
        return (metrics, conf) if confusion else metrics

    def averaged(self) -> contextlib.AbstractContextManager[None]:
        """Inside it, the model holds the weights the run is judged by: the average when
        ``training.ema`` is on (swapped in, no copies), else its own."""
        return self.ema.swapped() if self.ema is not None else contextlib.nullcontext()

    def weights(self) -> dict[str, torch.Tensor]:
        """Model weights and preprocessing statistics: everything needed to predict."""
        return ckpt.run_weights(self.model, self.preprocess)

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        ckpt.apply_run_weights(self.model, self.preprocess, weights)
        self.preprocess.to(self.device)

    def state(self, epoch_done: bool) -> dict[str, Any]:
        """Everything that decides the rest of the run (the weights are saved beside it).

        The position inside the epoch is the step itself: the data order and the augmentation
        of every batch derive from (seed, epoch, batch index).
        """
        self.verify_finite()
        self._count_correct()
        recipe = self.recipe.model_dump(mode="json")
        return {
            "recipe": recipe,
            "recipe_sha256": recipe_digest(recipe),
            "step": self.step,
            "epoch": self.epoch + int(epoch_done),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "callbacks": self.callbacks.state_dict(),
            "best": self.best.state_dict(),
            "last_val": dict(self.last_val),
            "window": {
                "loss": self.window_loss.cpu(),
                "correct": self.window_correct.cpu(),
                "seen": self.window_seen,
            },
            "train_seconds": self.train_seconds,
            "stop_reason": self.stop_reason,
            "wall_seconds": self.wall_seconds(),
            "skip_batches": sorted(self.skip_batches),
            "world_size": self.world,
            "grad_scaler": None if self.update.scaler is None else self.update.scaler.state_dict(),
        }

    def wall_seconds(self) -> float:
        """Wall-clock time of the whole run so far, earlier (resumed) segments included."""
        return self.wall_before + time.perf_counter() - self.fit_start

    def resume(self) -> None:
        """Continue from the run folder's last checkpoint (weights, optimiser, RNG, callbacks).

        Takes the run folder's lock first (held until :meth:`fit` ends), and refuses a recipe
        that differs from the one the checkpoint was trained with, naming every differing key.
        """
        self.lock.acquire()
        try:
            self._resume()
        except BaseException:
            self.lock.release()
            raise
        self.resumed = True

    def _resume(self) -> None:
        weights, state = ckpt.load_checkpoint(self.run_dir / "checkpoints", "last")
        if "recipe" in state:
            self.check_recipe(state["recipe"], "its checkpoint")
        elif (self.run_dir / "recipe.yaml").is_file():  # a checkpoint from before the digest
            self.check_recipe(self.saved_recipe(), "recipe.yaml")
        self._load(weights, state)

    def _load(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Put the trainer in a saved state: weights, optimiser, position, callbacks, RNG."""
        if state.get("world_size", 1) != self.world:  # the data shards and the RNG differ
            raise RunFolderError(
                f"{self.run_dir}: its checkpoint was written by {state.get('world_size', 1)} "
                f"process(es), this run has {self.world}; resume it with torchrun "
                f"--nproc-per-node {state.get('world_size', 1)} (or 1: plain trainlab train)"
            )
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
        if self.update.scaler is not None and state.get("grad_scaler"):
            self.update.scaler.load_state_dict(state["grad_scaler"])
        self.window_loss.copy_(state["window"]["loss"])
        self.window_correct.copy_(state["window"]["correct"])
        self.uncounted.clear()  # steps of the abandoned path
        self.window_seen = state["window"]["seen"]
        self.train_seconds, self.wall_before = state["train_seconds"], state["wall_seconds"]
        self.stop_reason = state["stop_reason"]  # an early-stopped run only finishes
        self.skip_batches = {tuple(b) for b in state["skip_batches"]}
        self.callbacks.load_state_dict(state["callbacks"])
        self.best.load_state_dict(state.get("best") or self._best_of_older_checkpoint(state))
        self.last_val = dict(state.get("last_val", {}))
        self.rng = state["rng"]

    def saved_recipe(self) -> dict[str, Any]:
        """The run folder's ``recipe.yaml`` as a dump (read as written, not re-validated)."""
        import yaml

        path = self.run_dir / "recipe.yaml"
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise RunFolderError(f"{path}: unreadable ({type(exc).__name__})") from None
        if not isinstance(raw, dict):
            raise RunFolderError(f"{path}: not a recipe (a mapping of sections)")
        return raw

    def check_recipe(self, saved: dict[str, Any], where: str) -> None:
        """The recipe this trainer runs must be the one the run started with (``saved``, read
        through the schema so that keys added since then take their defaults)."""
        saved = validate(saved, f"{self.run_dir}: {where}", trained=True).model_dump(mode="json")
        keys = recipe_differences(saved, self.recipe.model_dump(mode="json"))
        if keys:
            raise RunFolderError(
                f"{self.run_dir}: --resume with a different recipe than {where} "
                f"({len(keys)} differing: {', '.join(keys)}); resume without changes, or train "
                "into a new --out"
            )

    def _best_of_older_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint written before the trainer owned ``best``: early stopping's record (its
        metric and margin) or else the checkpointer's, with that epoch's validation metrics
        read back from ``metrics.jsonl``."""
        saved = state.get("callbacks", {})
        record = saved.get("early_stopping") or saved.get("checkpointer") or {}
        epoch = record.get("best_epoch", 0)
        metrics: dict[str, float] = {}
        log = self.run_dir / "metrics.jsonl"
        if epoch and log.is_file():
            for line in log.read_text().splitlines():
                row = json.loads(line)
                if row.get("epoch") == epoch and self.best.metric in row:
                    metrics = {k: v for k, v in row.items() if k.startswith("val_")}
        return {"value": record.get("best"), "epoch": epoch, "step": 0, "metrics": metrics}

    def _write_run_card(self) -> None:
        """A run folder gets the resolved recipe and what a Predictor needs to load the weights
        without the dataset (``model.json``: input shape and dtype, class names), each written
        once: a resumed run keeps the files it started with."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        recipe = self.run_dir / "recipe.yaml"  # first: it marks the folder as a run's
        if not recipe.exists():
            atomic_write(recipe, self.recipe.to_yaml().encode())
        card = self.run_dir / "model.json"
        if not card.exists():
            inputs = input_card(self.recipe.data, self.splits)
            outputs = num_outputs(self.recipe.loss.name, self.num_classes)
            payload = {**inputs, "num_outputs": outputs}
            atomic_write(card, json.dumps(payload, indent=2).encode())

    def _finish(self) -> RunResult:
        wall = self.wall_seconds()
        per_step = (
            len(self.splits.y_train) if self.parts.needs_closure else self.loader.global_batch
        )
        if self.is_writer:
            ckpt.save_weights(self.run_dir / "model.safetensors", self.weights())
        test = self.evaluate_split("test")
        raw = {}
        if self.ema is not None:  # the model holds the average since on_fit_end
            with self.ema.swapped():  # the live weights, for comparison only
                raw = {"raw": self.evaluate_split("test")}
        best_val = {"epoch": self.best.epoch, **self.best.metrics} if self.best.metrics else {}
        summary = {
            **test,
            "val": {"best": best_val, "final": dict(self.last_val), "metric": self.best.metric},
            "best_epoch": self.best.epoch or self.epoch,
            "epochs_run": self.epoch,
            "steps": self.step,
            "wall_s": round(wall, 3),
            "samples_per_s": round(self.step * per_step / max(self.train_seconds, 1e-9), 1),
            "stop_reason": self.stop_reason,
            "skipped_batches": [list(b) for b in sorted(self.skip_batches)],
            **raw,
            "num_params": sum(p.numel() for p in self.model.parameters()),
            **provenance(self.device),
            "run_dir": str(self.run_dir),
        }
        if self.is_writer:
            atomic_write(self.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
        return RunResult.from_summary(summary)
