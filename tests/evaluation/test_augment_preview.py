"""The augmentation preview: what it shows is the raw data and the device path's draws, the PNG
is a valid image of the size it reports, and the text on it does not overlap."""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

import trainlab
from trainlab.api import resolve_recipe
from trainlab.data.augment import AUGMENTS, Mixer, Pipeline
from trainlab.data.datasets import load_splits
from trainlab.errors import TrainlabError, TrainlabWarning
from trainlab.evaluation.augment_preview import (
    augment_draws,
    draw_augment_grid,
    pick_samples,
    png_size,
    render_augment_grid,
    sample_grid,
)

MNIST1D_CROP = ["data.name=mnist1d", "augment=[{name: random_crop, padding: 4}]"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _check_png(result: dict, path: Path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert png_size(data) == (result["width"], result["height"])
    pixels = matplotlib.image.imread(path)  # decodes: a valid PNG
    assert pixels.shape[:2] == (result["height"], result["width"])
    assert 600 <= result["width"] <= 2400 and 250 <= result["height"] <= 2400  # readable
    assert pixels[..., :3].std() > 0.05  # not a blank page
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_default_recipe_writes_a_png_of_the_size_it_reports(tmp_path: Path):
    recipe = resolve_recipe(None, None)
    assert [s.name for s in recipe.augment] == ["random_crop"]  # what the default recipe has
    out = tmp_path / "grid.png"
    result = render_augment_grid(recipe, out, n=16, seed=0)
    assert result["path"] == str(out) and result["kind"] == "image"
    assert result["samples"] == 16 and result["draws"] == 3 and not result["mixed"]
    assert result["augment"] == [{"name": "random_crop", "padding": 1}]
    assert result["value_range"] == [0.0, 16.0]  # digits: raw values 0..16
    _check_png(result, out)
    again = render_augment_grid(recipe, out, n=16, seed=0)  # an existing PNG is replaced
    assert again["width"] == result["width"]
    _check_png(again, out)


def test_mnist1d_with_a_1d_crop_draws_line_plots(tmp_path: Path):
    recipe = resolve_recipe(None, MNIST1D_CROP)
    out = tmp_path / "m1.png"
    result = render_augment_grid(recipe, out, n=9, seed=1)
    assert result["kind"] == "signal" and result["samples"] == 9 and result["draws"] == 3
    _check_png(result, out)
    fig = draw_augment_grid(sample_grid(recipe, n=9, seed=1))
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 9
    assert all(len(ax.lines) == 4 for ax in panels)  # original + 3 draws overlaid
    assert len({ax.lines[i].get_color() for ax in panels for i in range(4)}) == 4


@pytest.mark.parametrize(
    "overrides",
    [
        ["augment=[hflip, {name: random_crop, padding: 1}]"],
        MNIST1D_CROP,
    ],
    ids=["digits", "mnist1d"],
)
def test_originals_are_the_raw_data_and_the_draws_differ(overrides):
    recipe = resolve_recipe(None, overrides)
    grid = sample_grid(recipe, n=16, seed=0)
    splits = load_splits(recipe.data)
    idx = np.array(grid.indices)
    assert torch.equal(grid.originals, torch.from_numpy(splits.x_train[idx]))
    assert grid.labels == splits.y_train[idx].tolist()
    assert len(grid.augmented) == 3
    for draw in grid.augmented:
        assert draw.shape == grid.originals.shape
        changed = [not torch.equal(a, o) for a, o in zip(draw, grid.originals, strict=True)]
        assert sum(changed) >= 10, changed  # identity has probability 1/9 (digits), 1/9 (1-D)
    for a, b in itertools.combinations(grid.augmented, 2):
        assert not torch.equal(a, b)  # independent draws
    # what is drawn: the raw values shown relative to the data's range
    fig = draw_augment_grid(grid)
    if grid.kind == "image":
        shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
        assert len(shown) == 16 * 4
        for j in range(16):
            expected = (grid.originals[j, 0] / 16.0).numpy()
            assert np.allclose(np.asarray(shown[4 * j]), expected)
            for d in range(3):
                drawn = np.asarray(shown[4 * j + 1 + d])
                assert np.allclose(drawn, (grid.augmented[d][j, 0] / 16.0).clamp(0, 1).numpy())
    else:
        panels = [ax for ax in fig.axes if ax.lines]
        for j, ax in enumerate(panels):
            assert np.allclose(ax.lines[0].get_ydata(), grid.originals[j, 0].numpy())


def test_the_same_seed_gives_the_same_grid_and_another_a_different_one():
    recipe = resolve_recipe(None, ["augment=[hflip, {name: random_crop, padding: 1}]"])
    a, b = sample_grid(recipe, n=8, seed=5), sample_grid(recipe, n=8, seed=5)
    c = sample_grid(recipe, n=8, seed=6)
    assert a.indices == b.indices and all(map(torch.equal, a.augmented, b.augmented))
    assert a.indices != c.indices


def test_samples_cover_every_class_before_repeating_one():
    y = np.repeat(np.arange(5), [50, 3, 20, 1, 9])
    picked = pick_samples(y, 7, seed=0)
    assert sorted(y[picked[:5]].tolist()) == [0, 1, 2, 3, 4]
    assert len(set(picked.tolist())) == 7
    assert len(pick_samples(y, 500, seed=0)) == len(y)


class _Swap(Mixer):
    """A test mixer: each sample takes its neighbour's input with weight 0.7 (labels alike)."""

    def mix(self, x, y, gen, host=None):
        return 0.3 * x + 0.7 * x.roll(1, 0), 0.3 * y + 0.7 * y.roll(1, 0)


def test_mixers_run_after_the_per_sample_transforms_and_give_soft_labels():
    x = torch.rand(6, 1, 8, 8)
    y = torch.arange(6) % 3
    pipeline = Pipeline([AUGMENTS.build("hflip", p=1.0), _Swap(p=1.0)], num_classes=3)
    out, soft = augment_draws(x, y, pipeline, draws=2, seed=0)
    flipped = x.flip(-1)
    assert torch.allclose(out[0], 0.3 * flipped + 0.7 * flipped.roll(1, 0))
    assert soft[0] is not None and torch.allclose(soft[0].sum(1), torch.ones(6))
    assert torch.allclose(soft[0][1], torch.tensor([0.7, 0.3, 0.0]))
    plain, none = augment_draws(x, y, Pipeline([AUGMENTS.build("hflip")]), draws=2, seed=0)
    assert none == [None, None] and len(plain) == 2


def _text_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, *ax.texts, *ax.get_xticklabels(), *ax.get_yticklabels()]
    for legend in fig.legends:
        texts += legend.get_texts()
    return [
        (t.get_text(), t.get_window_extent(renderer))
        for t in texts
        if t.get_visible() and t.get_text().strip()
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        ["augment=[hflip, mixup]"],
        ["data.name=mnist1d", "augment=[{name: random_crop, padding: 4}, cutmix]"],
        ["augment=[]"],
    ],
    ids=["digits-mixup", "mnist1d-cutmix", "no-augment"],
)
def test_no_text_overlaps_or_leaves_the_page(overrides):
    recipe = resolve_recipe(None, overrides)
    with pytest.warns(TrainlabWarning) if "augment=[]" in overrides else nullcontext():
        grid = sample_grid(recipe, n=16, seed=0)
    if "augment=[]" not in overrides:
        assert grid.mixed
        for soft in grid.soft:
            assert torch.allclose(soft.sum(1), torch.ones(16), atol=1e-5)
    fig = draw_augment_grid(grid)
    width, height = fig.canvas.get_width_height()
    boxes = _text_boxes(fig)
    assert len(boxes) > 16
    for text, box in boxes:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, text
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        assert not a.shrunk(0.98, 0.98).overlaps(b.shrunk(0.98, 0.98)), (ta, tb)


def test_mixed_samples_are_titled_with_their_top_two_classes():
    recipe = resolve_recipe(None, ["augment=[mixup]"])
    grid = sample_grid(recipe, n=4, seed=0)
    fig = draw_augment_grid(grid)
    titles = [ax.get_title() for ax in fig.axes]
    mixed = [t for k, t in enumerate(titles) if k % 4 and "\n" in t]
    assert mixed, titles
    first = mixed[0].splitlines()
    assert len(first) == 2 and all(len(line.split()) == 2 for line in first)
    weights = [float(line.split()[1]) for line in first]
    assert weights[0] >= weights[1] and sum(weights) <= 1.0 + 1e-6


def test_an_empty_pipeline_shows_the_originals_with_a_warning(tmp_path: Path):
    recipe = resolve_recipe(None, ["augment=[]"])
    with pytest.warns(TrainlabWarning, match="no augmentation"):
        result = render_augment_grid(recipe, tmp_path / "plain.png", n=6)
    assert result["draws"] == 0 and "originals only" in result["notes"][0]
    _check_png(result, tmp_path / "plain.png")


def test_user_mistakes_are_trainlab_errors_and_write_nothing(tmp_path: Path):
    digits = resolve_recipe(None, None)
    with pytest.raises(TrainlabError, match=r"\.png"):
        render_augment_grid(digits, tmp_path / "grid.jpg")
    with pytest.raises(TrainlabError, match="1 to 64"):
        render_augment_grid(digits, tmp_path / "grid.png", n=0)
    flat = resolve_recipe(None, ["data.name=spiral", "augment=[]"])
    with pytest.raises(TrainlabError, match=r"shape \(2,\)"):
        render_augment_grid(flat, tmp_path / "grid.png")
    with pytest.raises(TrainlabError, match="random_crop"):  # the pipeline's own shape check
        render_augment_grid(resolve_recipe(None, ["data.name=spiral"]), tmp_path / "grid.png")
    assert list(tmp_path.iterdir()) == []


def test_the_public_api_resolves_overrides_and_defaults_the_seed(tmp_path: Path):
    out = tmp_path / "sub" / "a.png"
    result = trainlab.augment_preview(None, ["seed=3"], out=out, n=4)
    assert result["seed"] == 3 and out.is_file() and result["samples"] == 4
