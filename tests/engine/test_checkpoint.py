"""Checkpoints under fault injection: failed saves leave the previous one intact; damaged ones are
refused by name and the previous complete one is used; nothing loads by running code."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.small_disk import small_disk
from trainlab.engine.checkpoint import load_checkpoint, save_checkpoint
from trainlab.errors import (
    CheckpointError,
    NonFiniteError,
    RunFolderError,
    StorageError,
    TrainlabWarning,
)


def _weights(value: float) -> dict[str, torch.Tensor]:
    return {"model.w": torch.full((64, 64), value), "model.b": torch.arange(4.0)}


def _save(root: Path, step: int, value: float, **state) -> Path:
    return save_checkpoint(root, "last", step, _weights(value), {"step": step, **state}, keep=2)


def _assert_intact(root: Path, step: int, value: float) -> None:
    weights, state = load_checkpoint(root, "last")
    assert state["step"] == step
    assert torch.equal(weights["model.w"], _weights(value)["model.w"])
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary left


def test_save_rotates_and_keeps_the_previous_one(tmp_path: Path):
    for step in (10, 20, 30):
        _save(tmp_path, step, float(step))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last",
        "last-step-00000020",
        "last-step-00000030",
    ]
    _assert_intact(tmp_path, 30, 30.0)


def test_a_save_that_raises_half_way_leaves_the_previous_checkpoint(tmp_path: Path):
    _save(tmp_path, 10, 1.0)
    with pytest.raises(CheckpointError, match=r"step 20 not saved.*last-step-00000010.*intact"):
        _save(tmp_path, 20, 2.0, broken=lambda: None)  # weights written, then pickling fails
    _assert_intact(tmp_path, 10, 1.0)


def test_non_finite_weights_are_never_written(tmp_path: Path):
    _save(tmp_path, 10, 1.0)
    with pytest.raises(NonFiniteError, match="model.w holds NaN"):
        _save(tmp_path, 20, float("nan"))
    _assert_intact(tmp_path, 10, 1.0)


def test_a_read_only_checkpoint_folder(tmp_path: Path):
    _save(tmp_path, 10, 1.0)
    subprocess.run(["chattr", "+i", str(tmp_path)], check=True)  # read-only even for root
    try:
        with pytest.raises(CheckpointError, match="step 20 not saved"):
            _save(tmp_path, 20, 2.0)
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path)], check=True)
    _assert_intact(tmp_path, 10, 1.0)


def test_a_file_size_limit_makes_the_save_fail_cleanly(tmp_path: Path):
    _save(tmp_path, 10, 1.0)
    script = textwrap.dedent(f"""
        import resource, torch
        from pathlib import Path
        from trainlab.errors import CheckpointError
        from trainlab.engine.checkpoint import save_checkpoint
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the weights need 16 KiB
        try:
            save_checkpoint(Path({str(tmp_path)!r}), "last", 20,
                            {{"model.w": torch.ones(64, 64)}}, {{"step": 20}}, keep=2)
        except CheckpointError as exc:
            print("refused:", exc)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "refused:" in done.stdout and "File too large" in done.stdout, done.stderr
    _assert_intact(tmp_path, 10, 1.0)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path: Path, damage: str):
    _save(tmp_path, 10, 1.0)
    newest = _save(tmp_path, 20, 2.0)
    target = newest / "model.safetensors"
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    with pytest.warns(TrainlabWarning, match=f"{newest.name}.*damaged.*resuming from"):
        weights, state = load_checkpoint(tmp_path, "last")
    assert state["step"] == 10 and torch.equal(weights["model.w"], _weights(1.0)["model.w"])
    (tmp_path / "last-step-00000010" / "state.pt").write_bytes(b"")
    with pytest.raises(RunFolderError, match="no intact checkpoint"):
        load_checkpoint(tmp_path, "last")


class _Payload:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_crafted_to_run_code_is_refused_and_the_code_does_not_run(tmp_path: Path):
    import hashlib
    import json

    folder = _save(tmp_path, 10, 1.0)
    marker = tmp_path / "pwned"
    (folder / "state.pt").write_bytes(pickle.dumps({"step": _Payload(marker)}, protocol=2))
    manifest = json.loads((folder / "manifest.json").read_text())  # an attacker fixes the sums
    manifest["files"]["state.pt"] = hashlib.sha256((folder / "state.pt").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunFolderError, match="state.pt: refused"):
        load_checkpoint(tmp_path, "last")
    assert not marker.exists()


@pytest.mark.parametrize(
    "part, damage, said",
    [
        ("manifest.json", "garbage", "manifest.json: damaged (JSONDecodeError)"),
        ("manifest.json", "delete", "manifest.json: missing"),
        ("state.pt", "garbage", "state.pt: damaged (checksum mismatch)"),
        ("model.safetensors", "delete", "model.safetensors: missing"),
    ],
)
def test_every_damaged_part_of_a_checkpoint_is_named_by_file(
    tmp_path: Path, part: str, damage: str, said: str
):
    _save(tmp_path, 10, 1.0)
    newest = _save(tmp_path, 20, 2.0)
    target = newest / part
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(b"{not json")
    with pytest.warns(TrainlabWarning) as caught:
        _, state = load_checkpoint(tmp_path, "last")
    assert state["step"] == 10
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"{newest / part}: ") and said in message


def test_a_full_disk_is_named_with_the_free_space_and_leaves_nothing_behind(tmp_path: Path):
    with small_disk(tmp_path, "256k") as disk:
        _save(disk, 10, 1.0)
        with pytest.raises(StorageError, match="no space left on device") as caught:
            save_checkpoint(disk, "last", 20, {"model.w": torch.ones(256, 256)}, {}, keep=2)
        assert "step 20 not saved, the previous one (last-step-00000010) is intact" in str(
            caught.value
        )
        assert caught.value.exit_code == 1 and "\n" not in str(caught.value)
        _assert_intact(disk, 10, 1.0)
