"""Distributed data parallel under ``torchrun``: one process per device, one run folder.

``torchrun --nproc-per-node K -m trainlab train RECIPE`` starts K processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`init_from_env` joins them (gloo on the CPU, NCCL
on GPUs). Each process then builds the same parts from the same seed, and the trainer:

- reads its shard of every global batch: ``training.batch_size`` examples a process, so the
  global batch is ``batch_size * K``, and global batch i is the same examples, in the same
  order (from (seed, epoch)), as batch i of one process at that batch size; the linear (or
  sqrt) lr scaling rule sees the global batch;
- steps a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper, which averages the
  gradients: with a mean-reduced loss and equal shards, one process's gradient at the global
  batch (``training.sync_bn`` converts batch norm to :class:`~torch.nn.SyncBatchNorm`, which
  needs GPUs; without it each process normalises over its own shard);
- sums the logging window's figures over the processes (one small all-reduce per logged step),
  and agrees there on a stop signal and on the NaN/inf guard, so every process takes the same
  branch at the same step;
- writes nothing but on rank 0 (logs, checkpoints, snapshots, the summary). Every process
  reads the run folder's checkpoint to resume, so on several machines the folder must be on a
  shared file system; a checkpoint resumes at the world size that wrote it.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["world", "init_from_env", "broadcast", "wrap", "all_sum", "ENV"]

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Join torchrun's process group when its environment says there are several processes
    (and pin this process's GPU, ``LOCAL_RANK``); False when there is just one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_leave)  # one group for every run of the process (train --seeds)
    return True


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: object) -> object:
    """Rank 0's ``value`` on every rank (a run folder's generated name, say)."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the processes, in place (a no-op for one process)."""
    if world()[1] > 1:
        dist.all_reduce(tensor)
    return tensor


def wrap(model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """The module a training step calls: DDP over ``model`` (whose parameters it shares, so
    the optimiser, checkpoints and evaluation keep using ``model`` itself)."""
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type != "cuda":
        return nn.parallel.DistributedDataParallel(model)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return nn.parallel.DistributedDataParallel(model, device_ids=[index])
