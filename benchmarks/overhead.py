"""trainlab's step against a minimal hand-written PyTorch loop and Lightning, side by side.

Every loop trains its own copy of the same initial weights with AdamW, on the same
device-resident tensors, batch size and data order (a permutation per epoch). They take turns
epoch by epoch, the one that goes first rotating, so machine noise hits all alike; the first
two epochs warm up and are not counted. Reported per loop: the median of its per-epoch ratios
to the hand loop's epoch, the added time per step that ratio means ((ratio - 1) times the
hand loop's median step), and the ratio of the fastest epochs.

    python benchmarks/overhead.py [--json] [--epochs 20] [--case NAME ...] [--set KEY=VALUE ...]

Loops: ``trainlab`` (the default settings: the NaN/inf guard on, loss and accuracy summed),
``trainlab-noguard`` (``training.nonfinite=ignore``), and with Lightning installed
(``pip install -e '.[bench]'``) ``lightning`` (the same resident batches, no logging: its
loop alone) and ``lightning-idiomatic`` (a shuffling DataLoader over a TensorDataset and
``self.log`` every step, with the CSV logger: what its documentation shows). Cases are named
by data, model and batch; ``digits-mlp-16`` and ``digits-mlp-64`` are sub-millisecond steps,
where overhead shows most.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.api import resolve_recipe
from trainlab.data.loaders import DeviceLoader
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer

MLP = ["data.name=digits", "model.name=mlp", "model.widths=[256, 256]", "model.norm=none"]
CASES = {
    "digits-mlp-16": [*MLP, "training.batch_size=16"],
    "digits-mlp-64": [*MLP, "training.batch_size=64"],
    "mnist1d-cnn-128": [
        "data.name=mnist1d",
        "model.name=convnet",
        "model.channels=[32, 64, 128]",
        "model.depth=1",
        "model.widths=[]",
        "model.norm=batch",
        "training.batch_size=128",
    ],
    "digits-convnet": ["training.batch_size=64"],  # the default recipe's model
    "mnist1d-mlp": [
        "data.name=mnist1d",
        "model.name=mlp",
        "model.widths=[256, 256]",
        "model.norm=none",
        "training.batch_size=128",
    ],
}
COMMON = [
    "augment=[]",  # the hand loop does not augment
    "training.progress=false",
    "schedule.name=constant",
    "schedule.warmup_epochs=0",
    "loss.label_smoothing=0.0",
    "training.log_every=50",
    "training.epochs=100",
    "optimizer.weight_decay=0.0",
    "training.precision=fp32",  # the hand loop runs in fp32 too
]
Epoch = Callable[[int], float]  # runs epoch k, returns its seconds


def permutation(n: int, epoch: int, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).to(device)


def hand_loop(model: nn.Module, lr: float, loader: DeviceLoader) -> Epoch:
    """The loop people write by hand: slice a permutation, forward, loss, backward, step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    x, y, bs = loader.x, loader.y, loader.batch_size

    def epoch(k: int) -> float:
        t0 = time.perf_counter()
        order = permutation(len(x), k, x.device)
        model.train()
        for i in range(len(x) // bs):
            idx = order[i * bs : (i + 1) * bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    return epoch


def trainlab_loop(trainer: Trainer) -> Epoch:
    """trainlab's own epoch (``Trainer._train_epoch``: loader, step, metric sums, logging,
    per-step callbacks, the guard's end-of-epoch check); validation is not timed."""
    trainer.callbacks("on_fit_start", trainer)

    def epoch(k: int) -> float:
        t0 = time.perf_counter()
        trainer.model.train()
        trainer._train_epoch()
        trainer.epoch += 1
        return time.perf_counter() - t0

    return epoch


def lightning_loop(model: nn.Module, lr: float, loader: DeviceLoader, idiomatic: bool) -> Epoch:
    """Lightning's Trainer on the same model, one ``fit`` per epoch (so that the loops can take
    turns), timed inside the epoch by its own hooks; the optimiser lives across the fits."""
    import lightning as L  # noqa: N812  (the name its documentation uses)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # "GPU available: ..."
    warnings.filterwarnings("ignore", module="lightning")  # "does not have many workers"

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)

        def training_step(self, batch, index):
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            if idiomatic:
                self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return self.opt

    class Clock(L.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            self.seconds = time.perf_counter() - self.t0

    module, logs = Module(), tempfile.mkdtemp()
    x, y, bs = loader.x, loader.y, loader.batch_size

    def epoch(k: int) -> float:
        if idiomatic:
            batches = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(x, y),
                batch_size=bs,
                shuffle=True,
                drop_last=True,
                generator=torch.Generator().manual_seed(k),
            )
        else:
            order = permutation(len(x), k, x.device)
            slices = range(0, len(x) - bs + 1, bs)
            batches = Batches([(x[order[i : i + bs]], y[order[i : i + bs]]) for i in slices])
        clock = Clock()
        trainer = L.Trainer(
            max_epochs=1,
            accelerator="cpu" if x.device.type == "cpu" else "auto",
            devices=1,
            callbacks=[clock],
            logger=L.pytorch.loggers.CSVLogger(logs) if idiomatic else False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, train_dataloaders=batches)
        return clock.seconds

    return epoch


class Batches:
    """Ready batches as one iterable (a plain list would be read as a list of loaders)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def lightning_installed() -> bool:
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    return True


def measure(case: str, epochs: int, extra: list[str], lightning: bool) -> dict:
    """Every loop of ``case``, taking turns for ``epochs`` counted epochs."""
    overrides = [*CASES[case], *COMMON, *extra]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    ours = Trainer(build(resolve_recipe(None, overrides)), tmp / "a", progress=False)
    noguard = Trainer(
        build(resolve_recipe(None, [*overrides, "training.nonfinite=ignore"])),
        tmp / "b",
        progress=False,
    )
    init, lr, loader = ours.model, ours.parts.base_lr, ours.loader
    loops: dict[str, Epoch] = {
        "hand": hand_loop(copy.deepcopy(init), lr, loader),
        "trainlab": trainlab_loop(ours),
        "trainlab-noguard": trainlab_loop(noguard),
    }
    if lightning:
        loops["lightning"] = lightning_loop(copy.deepcopy(init), lr, loader, idiomatic=False)
        loops["lightning-idiomatic"] = lightning_loop(
            copy.deepcopy(init), lr, loader, idiomatic=True
        )
    times: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for k in range(epochs + 2):
        turn = names[k % len(names) :] + names[: k % len(names)]  # rotate who goes first
        for name in turn:
            seconds = loops[name](k)
            if k >= 2:
                times[name].append(seconds)
    steps = len(loader)
    hand = times["hand"]
    hand_step = statistics.median(hand) / steps
    loops_out = {}
    for name, ts in times.items():
        ratio = statistics.median(t / h for t, h in zip(ts, hand, strict=True))
        loops_out[name] = {
            "epoch_s": statistics.median(ts),
            "ratio": ratio,
            "ratio_of_minima": min(ts) / min(hand),
            # from the paired ratio: steadier than a difference of two medians
            "added_us_per_step": 1e6 * (ratio - 1) * hand_step,
        }
    return {
        "case": case,
        "steps_per_epoch": steps,
        "batch_size": loader.batch_size,
        "hand_step_ms": 1000 * hand_step,
        "loops": loops_out,
        # the trainlab default's figures at the top level, as earlier versions printed them
        "ratio": loops_out["trainlab"]["ratio"],
        "ratio_of_minima": loops_out["trainlab"]["ratio_of_minima"],
        "device": str(ours.device),
        "overrides": extra,
        "torch_threads": torch.get_num_threads(),
    }


def report(result: dict) -> str:
    head = (
        f"{result['case']} ({result['steps_per_epoch']} steps of {result['batch_size']}, hand "
        f"step {result['hand_step_ms']:.3f} ms, {result['device']}, "
        f"{result['torch_threads']} threads)"
    )
    rows = [
        f"  {name:>20}: {r['ratio']:.3f}x  {r['added_us_per_step']:+7.0f} us/step"
        f"  (ratio of minima {r['ratio_of_minima']:.3f})"
        for name, r in result["loops"].items()
        if name != "hand"
    ]
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--case", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--set", nargs="*", default=[], help="extra recipe overrides")
    parser.add_argument("--no-lightning", action="store_true", help="skip Lightning's loops")
    args = parser.parse_args()
    lightning = not args.no_lightning and lightning_installed()
    if not args.no_lightning and not lightning:
        print("Lightning is not installed (pip install -e '.[bench]'): skipped", file=sys.stderr)
    results = []
    for case in args.case:
        results.append(measure(case, args.epochs, args.set, lightning))
        print(report(results[-1]), file=sys.stderr)
    if args.json:
        print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
