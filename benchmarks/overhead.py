"""trainlab's epoch time against a minimal hand-written PyTorch loop, side by side in one run.

Both loops train the same model (a copy of the same initial weights), with the same optimiser,
data (device-resident tensors), batch size and data order; they alternate epoch by epoch so
machine noise hits both alike (the first loop to run alternates); the median of the per-epoch
ratios is reported, with the ratio of the fastest epochs beside it.

    python benchmarks/overhead.py [--json] [--epochs 20] [--case NAME ...] [--set KEY=VALUE ...]

Cases: ``digits-convnet`` (the default recipe's model, no augmentation) and ``mnist1d-mlp`` (a
small MLP: the step is short, so any per-step overhead shows most).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from trainlab.api import resolve_recipe
from trainlab.data.loaders import DeviceLoader
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer

CASES = {
    "digits-convnet": ["augment=[]", "training.batch_size=64"],
    "mnist1d-mlp": [
        "data.name=mnist1d",
        "model.name=mlp",
        "model.widths=[256, 256]",
        "model.norm=none",
        "augment=[]",
        "training.batch_size=128",
    ],
}
COMMON = [
    "training.progress=false",
    "schedule.name=constant",
    "schedule.warmup_epochs=0",
    "loss.label_smoothing=0.0",
    "training.log_every=50",
    "training.epochs=100",
    "optimizer.weight_decay=0.0",
    "training.precision=fp32",  # the hand loop runs in fp32 too
]


def hand_epoch(model, opt, loader: DeviceLoader, epoch: int) -> None:
    """The loop people write by hand: slice a permutation, forward, loss, backward, step."""
    x, y, bs = loader.x, loader.y, loader.batch_size
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).to(x.device)
    model.train()
    for i in range(len(x) // bs):
        idx = order[i * bs : (i + 1) * bs]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def measure(case: str, epochs: int, extra: list[str]) -> dict:
    recipe = resolve_recipe(None, [*CASES[case], *COMMON, *extra])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(build(recipe), Path(tmp), progress=False)
        model = copy.deepcopy(trainer.model)
        opt = torch.optim.AdamW(model.parameters(), lr=trainer.parts.base_lr, weight_decay=0.0)
        ours, hand = [], []
        trainer.callbacks("on_fit_start", trainer)

        def run_ours() -> float:
            t0 = time.perf_counter()
            trainer._train_epoch()
            trainer.epoch += 1
            return time.perf_counter() - t0

        def run_hand(epoch: int) -> float:
            t0 = time.perf_counter()
            hand_epoch(model, opt, trainer.loader, epoch)
            return time.perf_counter() - t0

        for epoch in range(epochs + 2):  # epochs 0 and 1 warm both up and are not counted
            if epoch % 2:  # alternate which loop goes first, so drift hits both alike
                a, b = run_ours(), run_hand(epoch)
            else:
                b, a = run_hand(epoch), run_ours()
            if epoch >= 2:
                ours.append(a)
                hand.append(b)
        trainer.callbacks("on_fit_end", trainer)
    steps = len(trainer.loader)
    return {
        "case": case,
        "steps_per_epoch": steps,
        "batch_size": trainer.loader.batch_size,
        "trainlab_epoch_s": statistics.median(ours),
        "hand_epoch_s": statistics.median(hand),
        "ratio": statistics.median(o / h for o, h in zip(ours, hand, strict=True)),
        "ratio_of_minima": min(ours) / min(hand),
        "hand_step_ms": 1000 * statistics.median(hand) / steps,
        "device": str(trainer.device),
        "overrides": extra,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--case", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--set", nargs="*", default=[], help="extra recipe overrides")
    args = parser.parse_args()
    results = [measure(case, args.epochs, args.set) for case in args.case]
    for r in results:
        print(
            f"{r['case']:>15}: trainlab {r['trainlab_epoch_s']:.3f}s  hand {r['hand_epoch_s']:.3f}s"
            f"  ratio {r['ratio']:.3f} (of minima {r['ratio_of_minima']:.3f})"
            f"  ({r['steps_per_epoch']} steps of {r['batch_size']}, "
            f"hand step {r['hand_step_ms']:.2f} ms, {r['device']})",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
