"""Every registered augmentation inside the trainer: it changes training batches on both loading
paths and never touches evaluation (validation/test see the original inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import trainlab
from trainlab.data.augment import AUGMENTS
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer
from trainlab.errors import RecipeError


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[int, Path]:
    """Small RGB images in [0, 1] (spatial rank 2) and 1-D sequences (rank 1), 4 classes."""
    root = tmp_path_factory.mktemp("aug-data")
    rng = np.random.default_rng(0)
    paths = {}
    for rank, shape in ((2, (3, 16, 16)), (1, (1, 40))):
        x = rng.random((160, *shape), dtype=np.float32)
        paths[rank] = root / f"rank{rank}.npz"
        np.savez(paths[rank], x=x, y=np.arange(160) % 4)
    return paths


def _trainer(path: Path, run: Path, augment: str, loader: str) -> Trainer:
    overrides = [
        "data.name=npz",
        f"data.path={path}",
        f"data.loader={loader}",
        "data.num_workers=0",
        "preprocess=per_channel",  # standardize is refused beside shift, crops and flips
        "model.name=mlp",
        "model.widths=[16]",
        f"augment={augment}",
        "training.epochs=1",
        "training.batch_size=32",
        "schedule=constant",
        "training.progress=false",
    ]
    return Trainer(build(trainlab.resolve_recipe(None, overrides)), run, progress=False)


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_training_batches_change_and_evaluation_does_not(name, datasets, tmp_path: Path):
    rank = 2 if 2 in AUGMENTS.build(name).dims else 1
    plain = _trainer(datasets[rank], tmp_path / "plain", "[]", "device")
    plain_test = plain.evaluate_split("test")
    for loader in ("device", "dataloader"):
        trainer = _trainer(datasets[rank], tmp_path / loader, f"[{name}]", loader)
        assert trainer.evaluate_split("test") == plain_test  # same init, original test inputs
        torch.manual_seed(0)
        augmented = next(iter(trainer.loader.epoch(0)))
        torch.manual_seed(0)
        original = next(iter(plain.loader.epoch(0)))
        changed = not torch.equal(augmented[0], original[0]) or not torch.equal(
            augmented[1], original[1]
        )
        assert changed, f"{name} left the training batch unchanged on the {loader} path"


@pytest.mark.parametrize("name", [n for n in AUGMENTS.names() if AUGMENTS.build(n).dims == (2,)])
def test_image_only_augmentations_refuse_sequences(name, datasets, tmp_path: Path):
    with pytest.raises(RecipeError, match=f"augment '{name}' applies to \\(C, H, W\\) images"):
        _trainer(datasets[1], tmp_path / "seq", f"[{name}]", "device")
