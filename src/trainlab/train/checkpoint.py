"""Checkpoints: written completely before anything points at them, read without running code.

Layout inside ``RUN/checkpoints``: one folder per checkpoint (``step-00001234``) holding
``model.safetensors`` (weights and preprocessing buffers) and ``state.pt`` (optimiser, RNG,
counters, callback states; loaded with ``weights_only=True``). A pointer file (``last``, ``best``)
names the folder; it is replaced atomically only after the folder is fully written and fsynced,
and older folders are deleted only after that. A kill at any moment leaves the previous pointer
naming a complete checkpoint.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from trainlab.errors import RunFolderError

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "atomic_write"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def save_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Weights as safetensors, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(_contiguous(tensors), str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: weights file not found") from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise RunFolderError(f"{path}: damaged weights file ({exc})") from None


def save_checkpoint(
    root: Path,
    pointer: str,
    step: int,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep: int = 1,
) -> Path:
    """Write a complete checkpoint folder, then point ``root/pointer`` at it; prune old ones."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{pointer}-step-{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(tmp / "model.safetensors", weights)
    with open(tmp / "state.pt", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    atomic_write(root / pointer, final.name.encode())
    olds = sorted(p for p in root.glob(f"{pointer}-step-*") if p.is_dir() and p != final)
    for old in olds[: max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(root: Path, pointer: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and state of the checkpoint ``root/pointer`` names (state loaded weights-only)."""
    ref = root / pointer
    if not ref.is_file():
        raise RunFolderError(f"{ref}: no checkpoint to resume from")
    folder = root / ref.read_text().strip()
    weights = load_weights(folder / "model.safetensors")
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunFolderError(
            f"{folder / 'state.pt'}: cannot load checkpoint state ({exc})"
        ) from None
    return weights, state


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, weights-only-loadable."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or -1],
        "python_version": random.getstate()[0],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    py = state["python"]
    gauss = None if py[-1] == -1 else py[-1]
    random.setstate((state["python_version"], tuple(int(v) for v in py[:-1]), gauss))
    np_state = np.random.get_state()
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((np_state[0], keys, state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
