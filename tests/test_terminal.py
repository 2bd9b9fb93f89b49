"""What a terminal shows: the CLI run in a real 80-column tmux pane, the screen read back.

rich lays out the progress bar and the ``list`` tables from the terminal's width, so only a
real terminal shows whether a field is cut (``400/…  0:0…``) or a cell ends in an ellipsis.
tmux is installed with apt-get on CI's fresh machine (tests.system_packages), else skipped.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system_packages import ensure_apt

COLUMNS = 80
BAR = re.compile(
    r"epoch +\d+/\d+ \S+ +(?P<done>\d+)/(?P<total>\d+) "
    r"(?P<elapsed>\d+:\d\d:\d\d)<(?P<left>\d+:\d\d:\d\d) loss \d+\.\d{4} acc \d\.\d{3}"
)
EPOCH_LINE = re.compile(
    r"^epoch +\d+/\d+ loss \d+\.\d{3} acc \d\.\d{3} val_loss \d+\.\d{3} val_acc \d\.\d{3} "
    r"lr \d\.\de[-+]?\d+ \d+(\.\d)?s( \*)?$"
)


class Pane:
    """One tmux server of our own (its own socket) with one pane COLUMNS wide."""

    def __init__(self, tmux: str, folder: Path) -> None:
        self.tmux, self.folder = tmux, folder
        self.socket = folder / "tmux.sock"
        config = folder / "tmux.conf"
        config.write_text("set -g history-limit 50000\n")
        self.base = [tmux, "-S", str(self.socket), "-f", str(config)]

    def start(self, command: str, cwd: Path, rows: int = 24) -> None:
        """Run ``command`` (then keep the pane open, so its last screen can be read)."""
        env = {**os.environ, "TERM": "xterm-256color", "OMP_NUM_THREADS": "1"}
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        shell = f"cd {shlex.quote(str(cwd))} && {command}; echo __done__ $?; sleep 600"
        subprocess.run(
            [*self.base, "new-session", "-d", "-x", str(COLUMNS), "-y", str(rows), shell],
            check=True,
            env=env,
            timeout=30,
        )

    def screen(self, history: bool = False) -> list[str]:
        """The pane's rows as shown (``history``: every row scrolled off the top too)."""
        extra = ["-S", "-"] if history else []
        out = subprocess.run(
            [*self.base, "capture-pane", "-p", *extra, "-t", "0"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return out.splitlines()

    def wait_for(
        self, found: Callable[[list[str]], bool], timeout: float = 240, history: bool = False
    ) -> list[str]:
        """Poll the screen until ``found(rows)``; fail with the last screen after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.screen(history)
            if found(rows):
                return rows
            if any(row.startswith("__done__") for row in rows) or time.monotonic() > deadline:
                pytest.fail("never saw what the test waits for; the screen:\n" + "\n".join(rows))
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def pane() -> Iterator[Pane]:
    """A private tmux server; the socket lives in a short /tmp folder (a unix socket's path is
    limited to about 100 bytes, which pytest's tmp_path can exceed)."""
    tmux = ensure_apt("tmux", "tmux")
    folder = Path(tempfile.mkdtemp(prefix="tl-tmux-"))
    made = Pane(tmux, folder)
    try:
        yield made
    finally:
        made.close()
        shutil.rmtree(folder, ignore_errors=True)


def _trainlab(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "trainlab.cli", *args])


def test_the_progress_bar_keeps_steps_times_and_loss_at_80_columns(pane: Pane, tmp_path: Path):
    # a long run (the digits recipe, 100 epochs) that the test stops once it has read the bar
    pane.start(_trainlab("train", "training.epochs=100", "training.log_every=1"), tmp_path)

    def mid_run(rows: list[str]) -> bool:
        bars = [m for row in rows if (m := BAR.search(row))]
        return any(0 < int(m["done"]) < int(m["total"]) for m in bars) and any(
            EPOCH_LINE.match(row) for row in rows
        )

    rows = pane.wait_for(mid_run)
    bar = next(row for row in rows if BAR.search(row))
    assert "…" not in bar, bar
    assert BAR.search(bar)["total"] == "2000", bar
    assert len(bar.rstrip()) <= COLUMNS
    epochs = [row for row in rows if row.startswith("epoch") and row is not bar]
    assert epochs and all(EPOCH_LINE.match(row) for row in epochs), "\n".join(rows)
    assert epochs[0].endswith(" *"), epochs[0]  # the first validation is the best so far


def test_list_at_80_columns_has_no_markup_and_no_cut_cells(pane: Pane, tmp_path: Path):
    pane.start(_trainlab("list"), tmp_path)
    rows = pane.wait_for(
        lambda rows: any(r.startswith("__done__") for r in rows), timeout=120, history=True
    )
    assert "__done__ 0" in rows, "\n".join(rows[-20:])
    text = "\n".join(rows)
    assert "technique: set by a recipe key" in text and "model: " in text
    assert "…" not in text
    for markup in ("``", ":class:", ":func:", ":meth:", "`"):
        assert markup not in text, markup
    assert max(len(row.rstrip()) for row in rows) <= COLUMNS
