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

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from trainlab.data.augment import Pipeline
from trainlab.data.preprocess import Preprocessor

__all__ = ["DeviceLoader", "WorkerLoader", "epoch_seed", "eval_batches"]

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each (run seed, epoch) pair."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def _order(n: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=gen)


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class DeviceLoader:
    """Mini-batches sliced from device-resident tensors (already preprocessed)."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        drop_last: bool,
        augment: Pipeline,
        seed: int,
    ) -> None:
        self.x, self.y, self.batch_size = x, y, min(batch_size, len(x))
        self.drop_last, self.augment, self.seed = drop_last, augment, seed
        self.aug_gen = torch.Generator(device=x.device)

    def __len__(self) -> int:
        return _num_batches(len(self.x), self.batch_size, self.drop_last)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = _order(len(self.x), self.seed, epoch).to(self.x.device)
        self.aug_gen.manual_seed(epoch_seed(self.seed + 1, epoch) + start)
        bs = self.batch_size
        for i in range(start, len(self)):
            idx = order[i * bs : (i + 1) * bs]
            xb = self.x[idx]
            yield (self.augment.batch(xb, self.aug_gen) if self.augment else xb), self.y[idx]

    def full_batch(self) -> Batch:
        """The whole split at once (for full-batch optimisers such as L-BFGS)."""
        return self.x, self.y


class _Samples(Dataset):
    """Per-sample access with v2 transforms applied to one example at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transforms: list) -> None:
        self.x, self.y, self.transforms = x, y, transforms

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Batch:
        xi = self.x[i]
        for t in self.transforms:
            xi = t(xi)
        return xi, self.y[i]


class WorkerLoader:
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
    ) -> None:
        self.data = _Samples(x, y, augment.transforms() if augment else [])
        self.batch_size, self.drop_last, self.seed = min(batch_size, len(x)), drop_last, seed
        self.preprocess, self.device, self.num_workers = preprocess, device, num_workers

    def __len__(self) -> int:
        return _num_batches(len(self.data), self.batch_size, self.drop_last)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = _order(len(self.data), self.seed, epoch)[start * self.batch_size :].tolist()
        gen = torch.Generator().manual_seed(epoch_seed(self.seed + 2, epoch) + start)
        loader = DataLoader(
            self.data,
            batch_size=self.batch_size,
            sampler=order,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=gen,  # seeds the workers' transforms from (seed, epoch), not global RNG
        )
        for xb, yb in loader:
            xb = xb.to(self.device, non_blocking=True)
            yield self.preprocess(xb), yb.to(self.device, non_blocking=True)

    def full_batch(self) -> Batch:
        x = torch.stack([self.data.x[i] for i in range(len(self.data))])
        return self.preprocess(x.to(self.device)), self.data.y.to(self.device)


def eval_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    preprocess: Preprocessor,
    device: torch.device,
) -> Iterator[Batch]:
    """Consecutive slices of a raw split, moved to the device and preprocessed batch by batch."""
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True)
        yield preprocess(xb), y[i : i + batch_size].to(device, non_blocking=True)
