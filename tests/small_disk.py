"""A real small file system for the disk-full tests: a tmpfs of a given size, mounted for the
block and unmounted after (skipped where mounting is not allowed, i.e. not root)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(root: Path, size: str) -> Iterator[Path]:
    """``root/disk`` as a tmpfs of ``size`` (``64k``, ``16m``) while the block runs."""
    disk = root / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Fill the file system of ``disk`` to the last byte; returns the ballast file."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)
    return ballast
