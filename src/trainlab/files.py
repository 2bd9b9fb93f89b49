"""Atomic file writes: the one place that writes a file so that a reader (or a resumed run) sees
either the old content or the new, never half of it.

Every writer in trainlab goes through :func:`atomic_path`: a temporary file in the same folder
(so the final rename never crosses a file system), fsynced, renamed over the target with
``os.replace`` (atomic on POSIX), then the folder fsynced so the rename itself survives a power
cut. A failure half-way removes the temporary file and leaves the previous target as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "fsync_dir"]


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
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
