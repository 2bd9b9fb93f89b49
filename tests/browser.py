"""Headless Chromium for tests: Debian's chromium driven by Playwright (no browser download).

``chromium_path()`` finds /usr/bin/chromium, installing the Debian package first when it is
missing and this process can (apt-get on the PATH, running as root), which is how CI's fresh
Debian machine gets it; otherwise the test is skipped with the reason. The install is serialised
with a file lock so two pytest-xdist workers do not fight over dpkg's lock.

``open_page(url)`` launches it through Playwright's Python package (``playwright`` in the
``test`` extra; it brings its node driver but never downloads a browser here: we pass
``executable_path``) with the flags these machines need (the closed network refuses Chromium's
background connections) and a new empty profile, and yields the page with the console errors,
page errors and failed requests it collected.

Use from a test::

    from tests.browser import open_page
    with open_page(path.as_uri()) as (page, problems):
        ...
        assert not problems
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_TIMEOUT_S = 1200


def _find() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_path() -> str:
    """The Chromium binary; installed with apt-get when missing and possible, else a skip."""
    found = _find()
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("headless Chromium is not installed and apt-get is not available")
    if os.geteuid() != 0:
        pytest.skip("headless Chromium is not installed (apt-get install chromium needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock_path = os.path.join(tempfile.gettempdir(), "trainlab-chromium-install.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing it right now
        found = _find()
        if found:
            return found
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        result = subprocess.run(
            install, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
        if result.returncode != 0:  # the package lists may be missing on a fresh machine
            subprocess.run(
                ["apt-get", "update"], env=env, capture_output=True, timeout=INSTALL_TIMEOUT_S
            )
            result = subprocess.run(
                install, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
            )
    found = _find()
    if not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        pytest.fail("apt-get install chromium failed: " + " | ".join(tail))
    return found


@contextlib.contextmanager
def open_page(url: str, width: int = 1280, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """A loaded page in headless Chromium and the list of problems seen while loading it:
    console errors, uncaught page errors and failed requests."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (test extra)"
    )
    executable = chromium_path()
    problems: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile,
        sync_api.sync_playwright() as p,
    ):
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "requestfailed",
                lambda r: problems.append(f"request failed: {r.url} ({r.failure})"),
            )
            page.goto(url, wait_until="load")
            yield page, problems
        finally:
            context.close()
