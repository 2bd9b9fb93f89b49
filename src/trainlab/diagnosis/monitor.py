"""The doctor's per-layer checks during ``trainlab train``, as a callback (``monitor_every``).

Every N steps the monitor records, for each layer, the activation statistics of that step's
forward pass (mean, std, dead ReLU units, saturated tanh/sigmoid values), the gradient norm, the
weight norm and the actual update/weight ratio of that step, as one line of ``layers.jsonl`` in
the run folder. At the end of the run it judges the first and the last record with the same
checks as ``trainlab doctor`` and writes ``monitor.json``; warnings and failures are printed.

It only reads: hooks are registered for the monitored step alone, nothing draws random numbers,
so a monitored run trains bit for bit like an unmonitored one (tested). Its log follows the
metrics log's rule: the line count is in every checkpoint, so a resumed run has no duplicate.

Layers are named as the doctor names them (``3 Linear(64->10)``), and the verdicts are the
doctor's four (:func:`~trainlab.diagnosis.layers.judge_layers`): ``layers.activations``,
``layers.gradients``, ``layers.updates`` and ``layers.symmetry`` (the rows of every weight at the
first record and at the last: a layer whose units stayed identical through training).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainlab.diagnosis.activations import (
    ACTIVATION_MODULES,
    LayerStats,
    Setting,
    output_stats,
)
from trainlab.diagnosis.findings import Finding
from trainlab.diagnosis.gradients import GradStats, check_updates, row_spread, weight_layers
from trainlab.engine.callbacks import JsonlLog
from trainlab.errors import TrainlabWarning
from trainlab.files import atomic_write

if TYPE_CHECKING:
    from trainlab.engine.loop import Trainer

__all__ = ["LayerMonitor", "judge_records", "read_records"]


class LayerMonitor(JsonlLog):
    """Per-layer statistics every ``every`` steps into ``layers.jsonl``; a verdict at the end."""

    key = "layer_monitor"

    def __init__(self, path: Path, every: int) -> None:
        super().__init__(path)
        self.every = every
        self.handles: list[Any] = []
        self.acts: list[LayerStats] = []
        self.before: list[torch.Tensor] | None = None

    def _weights(self, model: nn.Module) -> list[tuple[str, torch.Tensor]]:
        """(label, weight) of every trainable Linear/Conv layer, as the doctor names them."""
        return [(label, m.weight) for label, m in weight_layers(model)]

    def _arm(self, model: nn.Module) -> None:
        """Before a monitored step: hook the activations, remember the weights."""
        self.acts = []
        for name, module in model.named_modules():
            if isinstance(module, ACTIVATION_MODULES):
                hook = self._hook(name)
                self.handles.append(module.register_forward_hook(hook))
        self.before = [w.detach().clone() for _, w in self._weights(model)]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            # training forwards only: a validation pass may run while armed (end of an epoch)
            if module.training and isinstance(output, torch.Tensor):
                self.acts.append(output_stats(name, module, output))

        return hook

    def _disarm(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.acts, self.before = [], [], None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumed or rolled back: drop what was armed for a step that will run again."""
        self._disarm()
        super().load_state_dict(state)

    def on_fit_start(self, trainer: Trainer) -> None:
        super().on_fit_start(trainer)
        if trainer.step == 0 or (trainer.step + 1) % self.every == 0:  # step 1 sees the init
            self._arm(trainer.model)

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.before is not None:  # this step was armed for
            self._record(trainer)
        if (trainer.step + 1) % self.every == 0:
            self._arm(trainer.model)

    def _record(self, trainer: Trainer) -> None:
        before = self.before
        for handle in self.handles:
            handle.remove()
        self.handles = []
        grads = []
        for (name, w), old in zip(self._weights(trainer.model), before or [], strict=True):
            norm = float(old.norm())
            grad = float(w.grad.norm()) if w.grad is not None else 0.0
            update = float((w.detach() - old).norm()) / norm if norm > 0 else None
            grads.append(GradStats(name, grad, norm, update, row_spread(old)))
        self.before = None
        self._write(
            {
                "step": trainer.step,
                "lr": trainer.parts.lr(trainer.step - 1),
                "activations": [a.to_json() for a in self.acts],
                "gradients": [g.to_json() for g in grads],
            }
        )

    def on_fit_end(self, trainer: Trainer) -> None:
        self._disarm()
        super().on_fit_end(trainer)
        records = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        if not records:
            return
        first, last = records[0], records[-1]
        peak = max(records, key=lambda r: (r.get("lr", 0.0), r["step"]))
        findings = judge_records(records, Setting.of(trainer.parts.recipe))
        out = self.path.with_name("monitor.json")
        payload = {
            "steps": {"first": first["step"], "last": last["step"], "peak_lr": peak["step"]},
            "findings": [f.to_json() for f in findings],
        }
        atomic_write(out, json.dumps(payload, indent=2).encode())
        for finding in findings:
            if finding.status != "ok":
                warnings.warn(f"monitor: {finding.line()}", TrainlabWarning, stacklevel=2)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``layers.jsonl`` (a torn last line, from a killed run, is skipped)."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def judge_records(records: list[dict[str, Any]], setting: Setting) -> list[Finding]:
    """The doctor's layer verdicts on a monitor's records: the first record against the last,
    update/weight judged where the learning rate peaks (at the end of a decaying schedule every
    update is tiny by design). Used at the end of a run and, mid-run, by ``--prune-sick``."""
    from trainlab.diagnosis.layers import judge_layers

    first, last = records[0], records[-1]
    peak = max(records, key=lambda r: (r.get("lr", 0.0), r["step"]))
    updates = check_updates([_grad(g) for g in peak["gradients"]], None, setting)
    later = last is not first
    return judge_layers(
        [_layer(a) for a in first["activations"]],
        [_layer(a) for a in last["activations"]] if later else None,
        [_grad(g) for g in first["gradients"]],
        [_grad(g) for g in last["gradients"]] if later else None,
        setting,
        updates=updates,
    )


def _layer(row: dict[str, Any]) -> LayerStats:
    return LayerStats(**{k: row[k] for k in LayerStats.__dataclass_fields__})


def _grad(row: dict[str, Any]) -> GradStats:
    """A logged gradient row (logs written before ``row_spread`` existed lack it)."""
    return GradStats(**{k: row[k] for k in GradStats.__dataclass_fields__ if k in row})
