"""The metrics log: cut back exactly on resume, and a full disk is one error, not two."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.small_disk import small_disk
from trainlab.engine.callbacks import MetricsLog
from trainlab.errors import StorageError


@pytest.mark.parametrize(
    "lines, kept",
    [
        (2, b'{"step": 1}\n{"step": 2}\n'),  # what the checkpoint counted
        (9, b'{"step": 1}\n{"step": 2}\n{"step": 3}\n'),  # fewer on disk: a torn line goes
    ],
)
def test_resume_cuts_the_log_back_to_the_checkpoints_lines(tmp_path: Path, lines: int, kept):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4')  # killed mid-write
    log = MetricsLog(path)
    log.load_state_dict({"lines": lines})
    log.on_fit_start(None)
    log.on_fit_end(None)
    assert path.read_bytes() == kept


def test_a_full_disk_while_logging_is_one_storage_error_and_closing_is_quiet(tmp_path: Path):
    with small_disk(tmp_path, "64k") as disk:
        log = MetricsLog(disk / "metrics.jsonl")
        log.on_fit_start(None)
        with pytest.raises(StorageError, match="metrics.jsonl: no space left on device") as caught:
            for step in range(100_000):
                log.on_log(None, {"step": step, "loss": 0.5, "pad": "x" * 200})
        assert caught.value.exit_code == 1
        log.on_fit_end(None)  # nothing buffered is left to fail again
        written = (disk / "metrics.jsonl").read_bytes().split(b"\n")
        assert len(written) - 1 >= log.lines  # every counted line is on disk
