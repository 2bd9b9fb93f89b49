"""The two loading paths, behind one interface: ``loader.epoch(e, start)`` yields device batches.

- :class:`DeviceLoader`: the whole split is one tensor on the device; an epoch is a random
  permutation indexed in slices, with batched augmentation. No per-sample Python, no workers.
- :class:`WorkerLoader`: a ``torch.utils.data.DataLoader`` (workers, pinned memory) applying
  per-sample ``transforms.v2`` augmentation on the CPU, then preprocessing on the device. Used
  when the data should not be resident on the device (``data.loader``, ``data.max_resident_mb``).

Both derive an epoch's order from (seed, epoch) alone, and can start mid-epoch at a batch index:
that is what makes exact resume and rank-sharded data order possible without saving a sampler.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from trainlab.data.augment import Pipeline
from trainlab.data.preprocess import Preprocessor

__all__ = ["DeviceLoader", "WorkerLoader", "epoch_seed", "eval_batches"]

Batch = tuple[torch.Tensor, torch.Tensor]


SEED_MOD = 2**63 - 1  # torch generators take seeds below 2**64; stay in the signed range


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each (run seed, epoch) pair."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % SEED_MOD


def _order(n: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=gen)


class _Batches:
    """What both paths share: the split, the batch size and the (seed, epoch) data order.

    Under DDP (``shard=(rank, world)``) ``batch_size`` is this process's share: global batch i
    is examples ``order[i*G:(i+1)*G]`` with ``G = batch_size * world``, as for one process at
    batch size G, and this process reads its ``rank``-th slice of it. A partial last global
    batch is then dropped (unequal shards would weight the averaged gradient unevenly).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        drop_last: bool,
        seed: int,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.rank, self.world = shard
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x) // self.world)
        self.global_batch = self.batch_size * self.world
        self.drop_last, self.seed = drop_last or self.world > 1, seed

    def __len__(self) -> int:
        n, bs = len(self.x), self.global_batch
        return n // bs if self.drop_last else -(-n // bs)

    def shard(self, order: torch.Tensor, i: int) -> torch.Tensor:
        """The indices of this process's share of global batch ``i``."""
        first = i * self.global_batch + self.rank * self.batch_size
        return order[first : first + self.batch_size]


class DeviceLoader(_Batches):
    """Mini-batches sliced from device-resident tensors.

    Augmentation acts on raw inputs, before preprocessing, on both loading paths (a crop pads
    with black, a flip flips pixels, whatever the preprocessing). Without augmentation the whole
    split is preprocessed once; with it, each augmented batch is preprocessed on the device.
    The augmentation generator is re-seeded from (seed, epoch, batch index) for every batch, so
    a batch's random transform does not depend on how the run got there (exact resume anywhere).
    """

    def __init__(
        self,
        raw: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        drop_last: bool,
        augment: Pipeline,
        seed: int,
        preprocess: Preprocessor,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        super().__init__(raw, y, batch_size, drop_last, seed, shard)
        self.raw, self.augment, self.preprocess = raw, augment, preprocess
        self.aug_gen = torch.Generator(device=raw.device)
        self.prepare()

    @torch.no_grad()
    def prepare(self) -> None:
        """(Re)compute the resident inputs from the raw ones and the current preprocessing."""
        self.x = self.raw if self.augment else self.preprocess(self.raw)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = _order(len(self.x), self.seed, epoch).to(self.x.device)
        base = epoch_seed(self.seed + 1, epoch) * 100_003 + self.rank * 7_919  # Python ints
        for i in range(start, len(self)):
            idx = self.shard(order, i)
            xb = self.x[idx]
            yb = self.y[idx]
            if self.augment:  # each process draws its own shard's transforms
                seed = (base + i) % SEED_MOD
                self.aug_gen.manual_seed(seed)
                with torch.no_grad():
                    xb = self.augment.batch(xb, self.aug_gen)
                    xb, yb = self.augment.mix(xb, yb, self.aug_gen, seed)
                    xb = self.preprocess(xb)
            yield xb, yb

    def full_batch(self) -> Batch:
        """The whole split at once, unaugmented (full-batch optimisers such as L-BFGS)."""
        with torch.no_grad():
            return self.preprocess(self.raw), self.y


class _Samples(Dataset):
    """Per-sample access; transforms get a seed derived from (seed, epoch, sample index).

    Seeding per sample makes a worker's random transform independent of which worker runs it
    and of where the epoch started, so a resumed run sees the same augmented samples. The CPU
    generator's state is saved and restored around it, so with ``num_workers=0`` dropout's
    stream is untouched. (``torch.random.fork_rng`` would do the same but also seeds every
    device's generator: about 100 us per sample, more than the transforms themselves.)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transforms: list, seed: int = 0) -> None:
        self.x, self.y, self.transforms, self.seed, self.epoch = x, y, transforms, seed, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Batch:
        xi = self.x[i]
        if self.transforms:
            cpu = torch.default_generator
            state = cpu.get_state()
            cpu.manual_seed((epoch_seed(self.seed + 3, self.epoch) * 1_000_003 + i) % SEED_MOD)
            try:
                for t in self.transforms:
                    xi = t(xi)
            finally:
                cpu.set_state(state)
        return xi, self.y[i]


class WorkerLoader(_Batches):
    """A DataLoader over host tensors; preprocessing runs on the device, per batch."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        drop_last: bool,
        augment: Pipeline,
        seed: int,
        preprocess: Preprocessor,
        device: torch.device,
        num_workers: int,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        super().__init__(x, y, batch_size, drop_last, seed, shard)
        self.data = _Samples(x, y, augment.transforms() if augment else [], seed)
        self.preprocess, self.device, self.num_workers = preprocess, device, num_workers
        self.augment, self.mix_gen = augment, torch.Generator(device=device)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = _order(len(self.data), self.seed, epoch)
        if self.world > 1:  # this process's shards of the global batches, in order
            order = torch.cat([self.shard(order, i) for i in range(len(self))])
        order = order[start * self.batch_size :].tolist()
        self.data.epoch = epoch  # the workers (started below) get a copy with this epoch
        gen = torch.Generator().manual_seed((epoch_seed(self.seed + 2, epoch) + start) % SEED_MOD)
        loader = DataLoader(
            self.data,
            batch_size=self.batch_size,
            sampler=order,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=gen,  # seeds the workers' transforms from (seed, epoch), not global RNG
        )
        mix_base = epoch_seed(self.seed + 4, epoch) * 100_003 + self.rank * 7_919
        for i, (xb, yb) in enumerate(loader, start):
            xb = xb.to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            if self.augment.mixers:  # on whole batches, as on the device path
                seed = (mix_base + i) % SEED_MOD
                self.mix_gen.manual_seed(seed)
                with torch.no_grad():
                    xb, yb = self.augment.mix(xb, yb, self.mix_gen, seed)
            yield self.preprocess(xb), yb

    def full_batch(self) -> Batch:
        return self.preprocess(self.x.to(self.device)), self.y.to(self.device)


def eval_batches(
    x: torch.Tensor | Dataset,
    y: torch.Tensor,
    batch_size: int,
    preprocess: Preprocessor,
    device: torch.device,
    num_workers: int = 0,
) -> Iterator[Batch]:
    """A raw split in order, moved to the device and preprocessed batch by batch.

    Tensors are sliced; streamed image files are decoded by DataLoader workers.
    """
    if isinstance(x, torch.Tensor):
        batches: Iterable[Batch] = (
            (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
        )
    else:
        batches = DataLoader(  # its own generator: evaluation never draws from the global RNG
            _Samples(x, y, []),
            generator=torch.Generator(),
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
    for xb, yb in batches:
        yield preprocess(xb.to(device, non_blocking=True)), yb.to(device, non_blocking=True)
