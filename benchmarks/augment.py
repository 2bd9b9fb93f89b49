"""The two augmentation paths side by side in one run: batched on the device against per-sample
transforms in DataLoader workers, with the same transform list, on 32x32 RGB images.

(a) device path: trainlab's ``DeviceLoader`` (the split resident as one tensor, batches sliced
    from a permutation, ``Pipeline.batch`` on each whole batch with per-sample random parameters
    from a re-seeded ``torch.Generator``, then ``Pipeline.mix`` when the pipeline has a mixer);
(b) DataLoader path: trainlab's ``WorkerLoader`` (a ``torch.utils.data.DataLoader`` with
    ``--num-workers`` workers running each sample's ``transforms.v2`` callables, collation, then
    ``Pipeline.mix`` on the batch). The DataLoader is made per epoch, as in training, so each
    epoch pays for starting its workers.

Both get the same raw float images in [0, 1] (random uint8 / 255: the transforms' cost does not
depend on the pixel values), the same batch size, no preprocessing (``none``). For each pipeline
the two paths alternate epoch by epoch (which runs first alternates too) after one warm-up epoch
each; reported are the median samples/s of each path and the median of the per-pair ratios
device / DataLoader. Pipelines whose augmentations are not registered are skipped by name.

    python benchmarks/augment.py [--json] [--augment YAML] [--no-presets] [--preset NAME ...]
                                 [--n 10000] [--batch-size 512] [--num-workers 2] [--repeats 3]
                                 [--plain] [--threads T]

``--plain`` adds a third column: a hand-written DataLoader with the same transforms but without
``WorkerLoader``'s per-sample seeding (which makes augmentation reproducible across resumes and
worker counts; it re-seeds only the CPU generator, a few microseconds per sample).

``--augment`` takes a list written as in a recipe's ``augment:`` section, e.g.
``--augment "[hflip, {name: random_crop, padding: 4}]"`` (the default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from trainlab.api import resolve_recipe
from trainlab.data.augment import AUGMENTS, Pipeline
from trainlab.data.loaders import DeviceLoader, WorkerLoader
from trainlab.data.preprocess import create_preprocessor
from trainlab.errors import TrainlabError

DEFAULT_AUGMENT = "[hflip, {name: random_crop, padding: 4}]"
FLIP_CROP = ["hflip", {"name": "random_crop", "padding": 4}]
PRESETS: dict[str, list] = {  # CIFAR-style pipelines built on flips and 4-pixel crops
    "none": [],
    "flip+crop": FLIP_CROP,
    "rrc+flip": ["random_resized_crop", "hflip"],
    "affine": ["hflip", "affine"],
    "color_jitter": [*FLIP_CROP, "color_jitter"],
    "random_erasing": [*FLIP_CROP, "random_erasing"],
    "randaugment": [*FLIP_CROP, "randaugment"],
    "trivialaugment": [*FLIP_CROP, "trivialaugment"],
    "autoaugment": [*FLIP_CROP, {"name": "autoaugment", "policy": "cifar10"}],
    "mixup": [*FLIP_CROP, "mixup"],
    "cutmix": [*FLIP_CROP, "cutmix"],
}
NUM_CLASSES = 10


def _names(specs: list) -> list[str]:
    return [s if isinstance(s, str) else s["name"] for s in specs]


def build_pipeline(specs: list) -> tuple[Pipeline, list[dict]]:
    """The pipeline of a recipe-style augment list, validated by the recipe schema."""
    recipe = resolve_recipe(None, [f"augment={json.dumps(specs)}"])
    pipeline = Pipeline.from_specs(recipe.augment, NUM_CLASSES)
    return pipeline, [{"name": s.name, **s.params()} for s in recipe.augment]


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    return x.float().div_(255.0), y


class _Plain(Dataset):
    """A hand-written per-sample dataset: the same transforms, without trainlab's per-sample
    seeding (what most DataLoader code does; not reproducible across resumes or workers)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transforms: list) -> None:
        self.x, self.y, self.transforms = x, y, transforms

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        xi = self.x[i]
        for t in self.transforms:
            xi = t(xi)
        return xi, self.y[i]


class PlainLoader:
    """A plain ``DataLoader`` over :class:`_Plain` (shuffled, workers, then the batch mixer)."""

    def __init__(self, x, y, batch_size: int, pipeline: Pipeline, num_workers: int) -> None:
        self.y, self.pipeline = y, pipeline
        self.data = _Plain(x, y, pipeline.transforms())
        self.batch_size, self.num_workers = batch_size, num_workers
        self.gen = torch.Generator()

    def epoch(self, epoch: int):
        self.gen.manual_seed(epoch)
        loader = DataLoader(
            self.data,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            generator=self.gen,
        )
        for xb, yb in loader:
            if self.pipeline.mixers:
                xb, yb = self.pipeline.mix(xb, yb, self.gen)
            yield xb, yb


def epoch_seconds(loader: DeviceLoader | WorkerLoader | PlainLoader, epoch: int) -> float:
    t0 = time.perf_counter()
    count = 0
    for xb, _yb in loader.epoch(epoch):
        count += len(xb)
    elapsed = time.perf_counter() - t0
    assert count == len(loader.y), (count, len(loader.y))
    return elapsed


def measure(
    name: str,
    specs: list,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    num_workers: int,
    repeats: int,
    plain: bool = False,
) -> dict:
    pipeline, resolved = build_pipeline(specs)
    pipeline.check(tuple(x.shape[1:]))
    pipeline.fit(x)  # PCA lighting fits its eigenpairs here, as in training
    pre = create_preprocessor("none", 1e-5).fit(x[:1000])
    cpu = torch.device("cpu")
    device = DeviceLoader(x, y, batch_size, False, pipeline, 0, pre)
    workers = WorkerLoader(x, y, batch_size, False, pipeline, 0, pre, cpu, num_workers)
    epoch_seconds(device, 0)  # warm-up: first calls, allocator, worker start-up code paths
    epoch_seconds(workers, 0)
    hand = PlainLoader(x, y, batch_size, pipeline, num_workers) if plain else None
    if hand is not None:
        epoch_seconds(hand, 0)
    dev_s, dl_s, plain_s = [], [], []
    for r in range(1, repeats + 1):
        if r % 2:  # alternate which path goes first, so drift hits both alike
            a, b = epoch_seconds(device, r), epoch_seconds(workers, r)
        else:
            b, a = epoch_seconds(workers, r), epoch_seconds(device, r)
        dev_s.append(a)
        dl_s.append(b)
        if hand is not None:
            plain_s.append(epoch_seconds(hand, r))
    n = len(x)
    extra = {}
    if plain_s:
        extra = {
            "plain_dataloader_samples_per_s": n / statistics.median(plain_s),
            "ratio_to_plain": statistics.median(p / a for a, p in zip(dev_s, plain_s, strict=True)),
            "plain_dataloader_epoch_s": plain_s,
        }
    return {
        "pipeline": name,
        "augment": resolved,
        "device_samples_per_s": n / statistics.median(dev_s),
        "dataloader_samples_per_s": n / statistics.median(dl_s),
        "ratio": statistics.median(d / a for a, d in zip(dev_s, dl_s, strict=True)),
        "ratio_of_fastest": min(dl_s) / min(dev_s),
        "device_epoch_s": dev_s,
        "dataloader_epoch_s": dl_s,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print a JSON line at the end")
    parser.add_argument("--augment", default=DEFAULT_AUGMENT, help="YAML list, as in a recipe")
    parser.add_argument("--no-presets", action="store_true", help="only the --augment list")
    parser.add_argument("--preset", nargs="*", default=None, help=f"of: {', '.join(PRESETS)}")
    parser.add_argument("--n", type=int, default=10_000, help="images per epoch")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per path")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="also time a hand-written DataLoader without trainlab's per-sample seeding",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    try:
        user = yaml.safe_load(args.augment)
    except yaml.YAMLError as exc:
        parser.error(f"--augment: invalid YAML ({exc})")
    if not isinstance(user, list):
        parser.error(f"--augment: expected a YAML list such as {DEFAULT_AUGMENT}")
    cases: dict[str, list] = {}
    label = next((k for k, v in PRESETS.items() if v == user), "--augment")
    cases[label] = user
    skipped: dict[str, list[str]] = {}
    if not args.no_presets:
        chosen = args.preset if args.preset is not None else list(PRESETS)
        for name in chosen:
            if name not in PRESETS:
                parser.error(f"--preset {name!r}: expected one of {', '.join(PRESETS)}")
            missing = [a for a in _names(PRESETS[name]) if a not in AUGMENTS]
            if missing:
                skipped[name] = missing
            else:
                cases.setdefault(name, PRESETS[name])
    for name, specs in cases.items():  # refuse a bad list before timing anything
        try:
            build_pipeline(specs)[0].check((3, 32, 32))
        except TrainlabError as exc:
            parser.error(f"{name}: {exc}")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = {
        "cpu_count": os.cpu_count(),
        "usable_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "num_workers": args.num_workers,
        "torch": torch.__version__,
    }
    print(
        f"CPU: {cores} usable cores (os.cpu_count {os.cpu_count()}), torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads on the device path; DataLoader path: "
        f"{args.num_workers} workers. {args.n:,} RGB 32x32 images, batch {args.batch_size}, "
        f"{args.repeats} timed epochs per path after 1 warm-up.",
        file=sys.stderr,
    )
    for name, missing in skipped.items():
        print(f"skipped {name}: not registered: {', '.join(missing)}", file=sys.stderr)
    x, y = make_data(args.n)
    results = []
    for name, specs in cases.items():
        r = measure(name, specs, x, y, args.batch_size, args.num_workers, args.repeats, args.plain)
        results.append(r)
        print(
            f"{name:>15}: device {r['device_samples_per_s']:>9,.0f}/s  dataloader "
            f"{r['dataloader_samples_per_s']:>8,.0f}/s  ratio {r['ratio']:6.1f}x"
            f"  (fastest epochs {r['ratio_of_fastest']:.1f}x)"
            + (
                f"  plain DataLoader {r['plain_dataloader_samples_per_s']:,.0f}/s, ratio "
                f"{r['ratio_to_plain']:.1f}x"
                if args.plain
                else ""
            ),
            file=sys.stderr,
            flush=True,
        )
    print(
        "Machine noise: other processes share these cores; rerun to see the spread. The "
        "DataLoader figures include starting the workers each epoch, as training does.",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps({"machine": machine, "results": results, "skipped": skipped}))


if __name__ == "__main__":
    main()
