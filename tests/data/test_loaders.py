"""The two loading paths: device-resident batches and DataLoader workers (in memory or streamed
from image files) give the same training when they see the same data in the same order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_png

import trainlab
from trainlab.data.formats import ImageFiles
from trainlab.data.loaders import DeviceLoader, WorkerLoader
from trainlab.engine.build import build
from trainlab.engine.loop import Trainer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchvision's write_png


def _image_folder(root: Path, per_class: int = 24) -> Path:
    """Three colour classes of 8x8 PNGs (red, green or blue dominant, with noise)."""
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("test", per_class // 3)):
        for c, name in enumerate(["red", "green", "blue"]):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = (torch.rand(3, 8, 8, generator=gen) * 120).to(torch.uint8)
                img[c] += 120
                write_png(img, str(folder / f"{i:03d}.png"))
    return root


def _recipe(folder: Path, *extra: str) -> list[str]:
    return [
        "training.progress=false",
        f"data={{name: imagefolder, path: '{folder}'}}",
        "data.cache_dir=" + str(folder / ".cache"),
        "data.num_workers=0",
        "data.loader=dataloader",
        "model.name=mlp",
        "model.widths=[16]",
        "augment=[{name: hflip}]",
        "training.epochs=3",
        "training.batch_size=8",
        "schedule.warmup_epochs=0",
        "optimizer.lr=0.01",
        *extra,
    ]


def test_a_folder_too_large_to_hold_is_streamed_and_trains_identically(tmp_path: Path):
    folder = _image_folder(tmp_path / "images")
    results = {}
    for run, extra in (("held", []), ("streamed", ["data.max_resident_mb=0.001"])):
        # each trainer seeds the global RNG when built: build and fit one after the other
        trainer = Trainer(
            build(trainlab.resolve_recipe(None, _recipe(folder, *extra))),
            tmp_path / run,
            progress=False,
        )
        kind = ImageFiles if run == "streamed" else np.ndarray
        assert isinstance(trainer.splits.x_train, kind)
        assert isinstance(trainer.loader, WorkerLoader)
        (tmp_path / run).mkdir()
        results[run] = trainer.fit().summary
    a, b = results["held"], results["streamed"]
    assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-6)
    assert b["test_acc"] > 0.9  # the colour classes are easy


def test_auto_puts_data_that_fits_on_the_device(tmp_path: Path):
    folder = _image_folder(tmp_path / "images")
    trainer = Trainer(
        build(trainlab.resolve_recipe(None, [*_recipe(folder), "data.loader=auto"])),
        tmp_path / "c",
        progress=False,
    )
    assert isinstance(trainer.loader, DeviceLoader)


def test_streamed_images_of_another_size_are_refused_with_the_file(tmp_path: Path):
    folder = _image_folder(tmp_path / "images", per_class=3)
    odd = folder / "train" / "red" / "zzz.png"
    write_png(torch.zeros(3, 9, 9, dtype=torch.uint8), str(odd))
    files = ImageFiles([odd], (3, 8, 8), None)
    with pytest.raises(trainlab.DataError, match="zzz.png: image is 9x9"):
        files[0]
    assert files[np.array([0])].paths == [odd]


def test_full_batch_optimisers_refuse_streamed_data(tmp_path: Path):
    folder = _image_folder(tmp_path / "images", per_class=3)
    recipe = trainlab.resolve_recipe(
        None, [*_recipe(folder, "data.max_resident_mb=0.001"), "optimizer={name: lbfgs, lr: 1.0}"]
    )
    with pytest.raises(trainlab.RecipeError, match="full-batch"):
        Trainer(build(recipe), tmp_path / "d", progress=False)


def test_skipped_images_are_reported_as_a_warning(tmp_path: Path):
    folder = _image_folder(tmp_path / "images", per_class=6)
    (folder / "train" / "red" / "002.png").write_bytes(b"")
    recipe = trainlab.resolve_recipe(None, [*_recipe(folder), "data.on_corrupt=skip"])
    with pytest.warns(trainlab.TrainlabWarning, match=r"skipped 1 unreadable image .*002.png"):
        trainer = Trainer(build(recipe), tmp_path / "w", progress=False)
    assert len(trainer.splits.y_train) + len(trainer.splits.y_val) == 17
