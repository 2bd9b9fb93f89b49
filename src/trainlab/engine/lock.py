"""One writer per run folder: an exclusive lock held for as long as a process trains into it.

Two processes resuming the same folder at once interleave their metrics logs and checkpoints
(one lost 21 of 63 records while its summary claimed a complete run). The lock is an
``flock`` on ``RUN/.lock``, so the kernel releases it when its holder dies however it dies
(SIGKILL included); the file keeps the holder's pid, so the second process can name it and a
lock file left by a dead process is taken over with a warning saying whose it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
from pathlib import Path

from trainlab.errors import RunFolderError, TrainlabWarning
from trainlab.files import storage_error

__all__ = ["RunLock", "NoLock", "LOCK_NAME"]

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``flock(RUN/.lock)``; :meth:`acquire` is idempotent, :meth:`release` lets it go.

    The run folder is created on acquire (the lock file is the first thing in it).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunFolderError` naming the process that holds it."""
        if self.fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error(exc, self.path, "cannot create the run's lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise RunFolderError(
                f"{self.path.parent}: {who} is training in this run folder (lock "
                f"{self.path}); wait for it to finish or stop it first"
            ) from None
        previous = _read_pid(fd)
        if previous and previous != os.getpid() and not _alive(previous):
            warnings.warn(
                f"{self.path}: taking over the lock of pid {previous}, which is no longer running",
                TrainlabWarning,
                stacklevel=2,
            )
        self.fd = fd
        try:  # the pid is for the messages only: the flock is the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the run says so at its first write

    def release(self) -> None:
        """Let the lock go; the file stays (removing it would race a waiting process)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the kernel releases it anyway
            self.release()


def _read_pid(fd: int) -> int | None:
    """The pid written in a lock file, or None when it is empty or unreadable."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class NoLock:
    """What a process that never writes the run folder holds (a DDP rank other than 0)."""

    held = False

    def acquire(self) -> None: ...

    def release(self) -> None: ...
