"""What --resume refuses or repairs: an edited recipe.yaml, leftovers of killed saves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

import trainlab

FAST = ["training.progress=false", "model.name=mlp", "model.widths=[16]", "augment=[]"]
ONE_EPOCH = [*FAST, "training.epochs=1", "schedule.warmup_epochs=0"]


def test_an_edited_recipe_yaml_is_refused_naming_every_differing_key(tmp_path: Path):
    run = tmp_path / "run"
    trainlab.train(None, ONE_EPOCH, out=run, progress=False)
    path = run / "recipe.yaml"
    recipe = yaml.safe_load(path.read_text())
    recipe["optimizer"]["lr"] = 0.5
    recipe["training"]["batch_size"] = 8
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    done = subprocess.run(
        [sys.executable, "-m", "trainlab.cli", "train", "--out", str(run), "--resume"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "(2 differing: optimizer.lr, training.batch_size)" in lines[0]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_leftovers_of_killed_saves_are_removed_when_the_run_starts_again(tmp_path: Path):
    run = tmp_path / "run"
    trainlab.train(None, ONE_EPOCH, out=run, progress=False)
    torn = run / "checkpoints" / ".last-step-00000099.tmp-4242"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 1024)
    (run / ".metrics.jsonl.tmp-4242").write_text('{"step": 1')
    (run / "checkpoints" / ".last.tmp-4242").write_text("last-step-00000099")
    trainlab.train(None, out=run, resume=True, progress=False)
    assert [p.name for p in run.rglob("*") if ".tmp-" in p.name] == []
