"""Where a result came from: trainlab's and torch's versions and the code's git commit.

airbench's habit: store the code version with every result, so a number in a table can be
traced to the code that produced it. The commit is read only when trainlab runs from a git
checkout (an editable install); an installed wheel has none, and that is recorded as null.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import torch

__all__ = ["provenance", "git_commit"]


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout trainlab's code lives in (``+dirty`` when files differ from
    it), or None outside one or without git."""
    here = Path(__file__).resolve().parent
    try:
        top = _git(here, "rev-parse", "--show-toplevel")
        if not (Path(top) / "src" / "trainlab").is_dir():  # trainlab inside someone else's repo
            return None
        commit = _git(here, "rev-parse", "HEAD")
        dirty = _git(Path(top), "status", "--porcelain", "--untracked-files=no", "--", "src")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _git(where: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()


def provenance(device: torch.device) -> dict[str, Any]:
    """The versions, device and commit a run folder's summary records."""
    from trainlab.version import __version__

    return {
        "trainlab_version": __version__,
        "torch_version": torch.__version__,
        "device": str(device),
        "git_commit": git_commit(),
    }
