"""System programs that tests drive (Chromium, tmux), installed with apt-get when missing.

CI runs on a fresh Debian machine as root: there ``ensure_apt(binary, package)`` installs the
Debian package the first time a test needs it. Elsewhere (no apt-get, not root) the test is
skipped with the reason, never failed for a program the developer chose not to install. The
install is serialised with a file lock, so two pytest-xdist workers do not fight over dpkg's
lock; a failed install fails the test with apt-get's last lines.

Use from a test::

    from tests.system_packages import ensure_apt
    tmux = ensure_apt("tmux", "tmux")
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

import pytest

__all__ = ["ensure_apt", "INSTALL_TIMEOUT_S"]

INSTALL_TIMEOUT_S = 1200


def _find(names: Sequence[str]) -> str | None:
    """The first of ``names`` (a program name or an absolute path) that is on this machine."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def _apt_get(package: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``apt-get install package``, after ``apt-get update`` when the first try fails (a fresh
    machine may have no package lists yet)."""
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    result = subprocess.run(
        install, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
    )
    if result.returncode != 0:
        subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, timeout=INSTALL_TIMEOUT_S
        )
        result = subprocess.run(
            install, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
    return result


def ensure_apt(binary: str, package: str, also: Sequence[str] = ()) -> str:
    """The path of ``binary`` (or of one of the names in ``also``), installing the Debian
    ``package`` first when it is missing and this process can; otherwise a pytest skip."""
    names = [binary, *also]
    found = _find(names)
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip(f"{binary} is not installed and apt-get is not available")
    if os.geteuid() != 0:
        pytest.skip(f"{binary} is not installed (apt-get install {package} needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock_path = os.path.join(tempfile.gettempdir(), f"trainlab-{package}-install.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing it right now
        found = _find(names)
        if found:
            return found
        result = _apt_get(package, env)
    found = _find(names)
    if not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        pytest.fail(f"apt-get install {package} failed: " + " | ".join(tail))
    return found
