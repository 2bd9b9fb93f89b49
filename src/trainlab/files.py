"""Atomic file writes: the one place that writes a file so that a reader (or a resumed run) sees
either the old content or the new, never half of it.

Every writer in trainlab goes through :func:`atomic_path`: a temporary file in the same folder
(so the final rename never crosses a file system), fsynced, renamed over the target with
``os.replace`` (atomic on POSIX), then the folder fsynced so the rename itself survives a power
cut. A failure half-way removes the temporary file and leaves the previous target as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from trainlab.errors import StorageError

__all__ = [
    "atomic_path",
    "atomic_write",
    "fsync_dir",
    "storage_error",
    "is_disk_full",
    "remove_stale_temps",
]

TEMP_MARK = ".tmp-"  # every temporary name: ``.NAME.tmp-PID[.suffix]`` (files and folders)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk or an exceeded quota (an OSError, or a library's error
    that only says so in its text, as safetensors' does)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    if isinstance(exc, StorageError):
        return exc.disk_full
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text


def _free_space(path: Path) -> str:
    """The free space of the file system holding ``path`` (its nearest existing folder)."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown"  # unreachable


def storage_error(
    exc: BaseException, path: str | Path, what: str = "cannot write", kept: str = ""
) -> StorageError:
    """One line for a failed write: "no space left on device" with the path and the free space
    when the disk (or quota) is full, else the OS's own reason; ``kept`` says what is intact."""
    path = Path(path)
    if is_disk_full(exc):
        return StorageError(
            f"{path}: no space left on device ({_free_space(path)} free now){kept}; free some "
            "space and run the same command again (with --resume for a run that had started)",
            disk_full=True,
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StorageError(f"{path}: {what} ({type(exc).__name__}: {' '.join(reason.split())}){kept}")


def remove_stale_temps(*folders: Path) -> list[Path]:
    """Remove what killed writers left behind in ``folders`` (temporary files and checkpoint
    folders, up to ~1 MB each); call it only while holding the run's lock, when no other
    process can be writing them. Returns what was removed."""
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.startswith(".") and TEMP_MARK in entry.name:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
                removed.append(entry)
    return removed


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a library to write to (``np.savez``,
    safetensors' ``save_file``, ``Figure.savefig``); on success it is fsynced and renamed over
    ``path``; on any exception it is removed and ``path`` is untouched."""
    path = Path(path)
    # the suffix is kept last: np.savez and savefig pick the format from it
    tmp = path.with_name(f".{path.stem}{TEMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(exc):  # one line naming the file, not the OS's traceback
            raise storage_error(exc, path) from None
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
