"""Headless Chromium for tests: Debian's chromium driven by Playwright (no browser download).

``chromium_path()`` finds /usr/bin/chromium, installing the Debian package first when it is
missing and this process can (:func:`tests.system_packages.ensure_apt`: apt-get as root, which
is how CI's fresh Debian machine gets it); otherwise the test is skipped with the reason.

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
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.system_packages import ensure_apt

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The Chromium binary; installed with apt-get when missing and possible, else a skip."""
    return ensure_apt("/usr/bin/chromium", "chromium", also=("chromium", "chromium-browser"))


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
