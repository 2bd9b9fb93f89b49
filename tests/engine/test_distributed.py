"""DDP under torchrun (gloo, CPU): two real processes train what one process trains at the same
global batch, write one run folder from rank 0, and resume exactly after a SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import trainlab
from trainlab.data.augment import Pipeline
from trainlab.data.loaders import DeviceLoader, WorkerLoader
from trainlab.data.preprocess import create_preprocessor
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer
from trainlab.errors import RunFolderError

ROOT = Path(__file__).resolve().parents[2]
RECIPE = [
    "data.name=digits",
    "model.name=mlp",
    "model.widths=[32]",
    "model.norm=none",
    "augment=[]",
    "training.epochs=3",
    "schedule.warmup_epochs=0",
    "training.log_every=10",
]
PER_PROCESS = 16  # two processes: a global batch of 32


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _torchrun(*args: str, cwd: Path, env: dict[str, str] | None = None):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    return _run([*launcher, "2", *args], cwd, env)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def _resumes_to(reference: Path, args: list[str], where: Path) -> None:
    """The same torchrun command with --resume finishes ``where/run`` as ``reference``."""
    done = _torchrun(
        "-m", "trainlab", "train", *args, "--out", "run", "--resume", "--no-progress", cwd=where
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _weights(where / "run"), _weights(reference)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two processes, 16 examples each a step, trained start to end."""
    where = tmp_path_factory.mktemp("ddp")
    done = _torchrun(
        "-m", "trainlab", "train", *RECIPE, f"training.batch_size={PER_PROCESS}",
        "--out", "run", "--no-progress", cwd=where,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return where / "run"


def test_two_processes_train_what_one_trains_at_the_same_global_batch(two: Path, tmp_path):
    one = tmp_path / "one"
    trainlab.train(
        None, [*RECIPE, f"training.batch_size={2 * PER_PROCESS}"], out=one, progress=False
    )
    a, b = _weights(two), _weights(one)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    # the logged loss is the whole global batch's, not rank 0's half
    torch.testing.assert_close(_losses(two), _losses(one), rtol=1e-4, atol=1e-5)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["steps"] == json.loads((one / "summary.json").read_text())["steps"]


def test_rank_zero_alone_writes_the_run_folder(two: Path):
    names = {p.name for p in two.iterdir()}
    assert names == {"checkpoints", "metrics.jsonl", "model.json", "model.safetensors",
                     "recipe.yaml", "summary.json", ".lock"} - ({".lock"} - names)  # fmt: skip
    rows = (two / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(r)["step"] for r in rows if "loss" in json.loads(r)]
    assert steps == sorted(set(steps))  # one writer: no line twice


def test_a_sigkilled_two_process_run_resumes_to_the_same_weights(two: Path, tmp_path: Path):
    """Both processes get a real SIGKILL just after the third logged step (step 30), past the
    checkpoint of step 20; the same torchrun command with --resume finishes the run."""
    args = [*RECIPE, f"training.batch_size={PER_PROCESS}", "training.checkpoint_every_steps=20"]
    kill = {"KILL_AT": "trainlab.engine.loop:Trainer._log:after:3:KILL"}
    killed = _torchrun(
        str(ROOT / "tests" / "reliability" / "kill_at.py"), "train", *args, "--out", "run",
        "--no-progress", cwd=tmp_path, env=kill,
    )  # fmt: skip
    assert killed.returncode != 0
    run = tmp_path / "run"
    assert not (run / "summary.json").exists()
    assert (run / "checkpoints" / "last").read_text().strip().endswith("20")
    _resumes_to(two, args, tmp_path)


def test_a_sigterm_to_one_process_stops_both_at_the_next_logged_step(two: Path, tmp_path: Path):
    """Only rank 1 gets SIGTERM, just after step 20's log; the processes agree on it at the
    next logged step (30), where both stop and rank 0 saves; the resumed run ends as the
    uninterrupted one."""
    args = [*RECIPE, f"training.batch_size={PER_PROCESS}"]
    term = {"KILL_AT": "trainlab.engine.loop:Trainer._log:after:2:TERM", "KILL_AT_RANK": "1"}
    stopped = _torchrun(
        str(ROOT / "tests" / "reliability" / "kill_at.py"), "train", *args, "--out", "run",
        "--no-progress", cwd=tmp_path, env=term,
    )  # fmt: skip
    assert stopped.returncode != 0
    assert "checkpoint saved at step 30" in stopped.stderr, stopped.stderr[-2000:]
    assert "torchrun --nproc-per-node 2 -m trainlab train" in stopped.stderr
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last").read_text().strip().endswith("30")
    _resumes_to(two, args, tmp_path)


def test_a_checkpoint_resumes_only_at_the_world_size_that_wrote_it(two: Path):
    recipe = trainlab.resolve_recipe(two / "recipe.yaml", [])
    trainer = Trainer(build(recipe), two, progress=False)
    with pytest.raises(RunFolderError, match=r"written by 2 process\(es\), this run has 1; "):
        trainer.resume()
    assert not trainer.lock.held


@pytest.mark.parametrize("kind", ["device", "worker"])
def test_the_shards_of_a_global_batch_are_one_process_batch(kind: str):
    """Rank r of K reads slice r of global batch i, which is batch i of one process at K times
    the batch size, on both loading paths."""
    x = torch.arange(103, dtype=torch.float32)[:, None]
    y = torch.arange(103)
    pre = create_preprocessor("none", 1e-5)

    def loader(bs: int, shard: tuple[int, int]):
        common = (x, y, bs, False, Pipeline([]), 7, pre)
        if kind == "device":
            return DeviceLoader(*common, shard=shard)
        return WorkerLoader(*common, torch.device("cpu"), 0, shard=shard)

    single = list(loader(8, (0, 1)).epoch(2))
    shards = [list(loader(4, (r, 2)).epoch(2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 103 // 8
    for i, (_, yb) in enumerate(single[: 103 // 8]):
        assert torch.equal(torch.cat([shards[0][i][1], shards[1][i][1]]), yb)
    resumed = list(loader(4, (1, 2)).epoch(2, start=5))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(resumed, shards[1][5:], strict=True))
