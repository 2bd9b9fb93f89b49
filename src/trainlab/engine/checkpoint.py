"""Checkpoints: written completely before anything points at them, read without running code.

Layout inside ``RUN/checkpoints``: one folder per checkpoint (``last-step-00001234``) holding
``model.safetensors`` (weights and preprocessing buffers), ``state.pt`` (optimiser, RNG,
counters, callback states; loaded with ``weights_only=True``) and ``manifest.json`` (SHA-256 of
both, checked before loading). A pointer file (``last``, ``best``)
names the folder; it is replaced atomically only after the folder is fully written and fsynced,
and older folders are deleted only after that. A kill at any moment leaves the previous pointer
naming a complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from trainlab.errors import (
    CheckpointError,
    NonFiniteError,
    RecipeError,
    RunFolderError,
    TrainlabWarning,
)
from trainlab.files import (
    TEMP_MARK,
    atomic_path,
    atomic_write,
    fsync_dir,
    is_disk_full,
    storage_error,
)

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "has_checkpoint",
    "save_weights",
    "load_weights",
    "run_weights",
    "apply_run_weights",
]

MANIFEST = "manifest.json"


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def save_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Weights as safetensors, written atomically."""
    with atomic_path(path) as tmp:
        save_file(_contiguous(tensors), str(tmp))


def run_weights(model: torch.nn.Module, preprocess: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Model weights and preprocessing statistics under one namespace: what a run folder's
    ``model.safetensors`` and every checkpoint hold, and all a prediction needs."""
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    out.update({f"preprocess.{k}": v for k, v in preprocess.state_dict().items()})
    return out


def apply_run_weights(
    model: torch.nn.Module, preprocess: torch.nn.Module, weights: dict[str, torch.Tensor]
) -> None:
    """Load what :func:`run_weights` saved; a mismatch is one line naming the first keys."""
    state = {k[6:]: v for k, v in weights.items() if k.startswith("model.")}
    pre = {k[11:]: v for k, v in weights.items() if k.startswith("preprocess.")}
    try:
        model.load_state_dict(state, strict=True)
        preprocess.load_state_dict(pre, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise RecipeError(
            f"checkpoint does not fit this recipe's model: {' '.join(first[:2])}"
        ) from None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: weights file not found") from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise RunFolderError(f"{path}: damaged weights file ({exc})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_finite(weights: dict[str, torch.Tensor], step: int) -> None:
    """A checkpoint with NaN or infinite weights is never written (it could not be resumed)."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteError(
                f"{name} holds NaN or infinite values at step {step}: training stopped and this "
                "state was not checkpointed (the last good checkpoint is kept). Likely causes: "
                "learning rate too high, bad input values, or bf16/fp16 overflow"
            )


class _Recording:
    """A file wrapper that keeps the OSError of a failed write: torch.save reports one only as
    ``[enforce fail at inline_container.cc] unexpected pos``, which hides a full disk."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def _save_state(path: Path, state: dict) -> None:
    """``torch.save`` to ``path``, fsynced; a failed write raises the OS's own error."""
    with open(path, "wb") as f:
        recording = _Recording(f)
        try:
            torch.save(state, recording)
        except RuntimeError:
            if recording.error is not None:
                raise recording.error from None
            raise
        f.flush()
        os.fsync(f.fileno())


def _write_folder(folder: Path, step: int, weights: dict, state: dict) -> None:
    """Weights, state and a manifest of their SHA-256, each fsynced, into ``folder``."""
    save_weights(folder / "model.safetensors", weights)
    _save_state(folder / "state.pt", state)
    files = {name: _sha256(folder / name) for name in ("model.safetensors", "state.pt")}
    manifest = json.dumps({"step": step, "files": files}, indent=1).encode()
    atomic_write(folder / MANIFEST, manifest)
    fsync_dir(folder)


def save_checkpoint(
    root: Path,
    pointer: str,
    step: int,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep: int = 1,
) -> Path:
    """Write a complete checkpoint folder, then point ``root/pointer`` at it; prune old ones.

    The folder is written under a temporary name and renamed only once complete; the pointer is
    replaced after that, and older folders are deleted last (``keep`` of them stay, newest
    first). Any failure (disk full, permission, file-size limit, an exception half-way) removes
    the partial folder and raises :class:`CheckpointError`; the previous checkpoint is untouched.
    """
    _check_finite(weights, step)
    final = root / f"{pointer}-step-{step:08d}"
    tmp = root / f".{final.name}{TEMP_MARK}{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_folder(tmp, step, weights, state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
        atomic_write(root / pointer, final.name.encode())
    except Exception as exc:  # whatever failed (I/O, serialisation), nothing half-made remains
        shutil.rmtree(tmp, ignore_errors=True)
        previous = root / pointer
        kept = previous.read_text().strip() if previous.is_file() else "none"
        if is_disk_full(exc):
            kept = f"; checkpoint at step {step} not saved, the previous one ({kept}) is intact"
            raise storage_error(exc, final, kept=kept) from None
        raise CheckpointError(
            f"{root}: checkpoint at step {step} not saved ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); the previous one ({kept}) is intact"
        ) from None
    olds = sorted((p for p in _folders(root, pointer) if p != final), reverse=True)
    for old in olds[max(0, keep - 1) :]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _folders(root: Path, pointer: str) -> list[Path]:
    """Complete (renamed) checkpoint folders of ``pointer``, newest step first."""
    return sorted((p for p in root.glob(f"{pointer}-step-*") if p.is_dir()), reverse=True)


def _read_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verify a folder against its manifest, then load it without running any code."""
    for name, digest in _manifest(folder).items():
        part = folder / name
        try:
            actual = _sha256(part)
        except FileNotFoundError:
            raise CheckpointError(f"{part}: missing (incomplete checkpoint)") from None
        except OSError as exc:
            raise CheckpointError(f"{part}: unreadable ({type(exc).__name__})") from None
        if actual != digest:
            raise CheckpointError(f"{part}: damaged (checksum mismatch)")
    weights = load_weights(folder / "model.safetensors")
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses any pickle that would run code
        raise CheckpointError(
            f"{folder / 'state.pt'}: refused ({' '.join(str(exc).split())[:200]})"
        ) from None
    return weights, state


def _manifest(folder: Path) -> dict[str, str]:
    """The manifest's ``{file: sha256}``; a missing or damaged manifest names itself."""
    path = folder / MANIFEST
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise TypeError("files is not a mapping of names to digests")
        if "/" in "".join(files) or ".." in files:
            raise ValueError("a file name leaves the checkpoint folder")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (incomplete checkpoint)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: damaged ({type(exc).__name__})") from None
    return files


def has_checkpoint(root: Path, pointer: str = "last") -> bool:
    """Whether ``root`` holds a ``pointer`` checkpoint to resume from (intact or not: a damaged
    one is :func:`load_checkpoint`'s to refuse, never a reason to start afresh)."""
    return (root / pointer).is_file() or bool(_folders(root, pointer))


def load_checkpoint(root: Path, pointer: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and state of the newest intact checkpoint of ``pointer``.

    The one the pointer names is tried first; a damaged one is refused with a warning naming
    it and the next older complete one is used. Never a silent fresh start: with none intact,
    this raises.
    """
    ref = root / pointer
    named = root / ref.read_text().strip() if ref.is_file() else None
    candidates = ([named] if named is not None else []) + [
        p for p in _folders(root, pointer) if p != named
    ]
    if not candidates:
        raise RunFolderError(f"{ref}: no checkpoint to resume from")
    problems = []
    for folder in candidates:
        try:
            loaded = _read_folder(folder)
        except (CheckpointError, RunFolderError) as exc:
            problems.append(str(exc))
            continue
        for problem in problems:
            warnings.warn(
                f"{problem}; resuming from {folder} instead", TrainlabWarning, stacklevel=2
            )
        return loaded
    raise RunFolderError(f"{root}: no intact checkpoint to resume from: {'; '.join(problems)}")
