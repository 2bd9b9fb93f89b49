"""The command center page (``trainlab compare``): real tiny runs, a real Optuna SQLite study,
the page opened in headless Chromium (every figure loads, the table sorts on a click)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from tests.browser import open_page
from trainlab import api
from trainlab.errors import RunFolderError
from trainlab.tuning import compare_figures as figs
from trainlab.tuning.compare import compare, plain_hyperparameters

# (stage, number, lr, activation, epochs, state): lr spans 2 decades, so a log axis either way
TRIALS = [
    ("coarse", 0, 1e-4, "relu", 2, "complete"),
    ("coarse", 1, 1e-3, "tanh", 2, "complete"),
    ("coarse", 2, 1e-2, "relu", 2, "pruned"),
    ("fine", 0, 3e-3, "tanh", 3, "complete"),
]
RANGES = {
    "coarse": {
        "optimizer.lr": {"kind": "loguniform", "low": 1e-4, "high": 1e-2},
        "model.activation": {"kind": "choice", "choices": ["relu", "tanh"]},
    },
    "fine": {
        "optimizer.lr": {"kind": "loguniform", "low": 1e-3, "high": 5e-3},
        "model.activation": {"kind": "choice", "choices": ["relu", "tanh"]},
    },
}
DISTRIBUTIONS = {
    "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
    "model.activation": CategoricalDistribution(["relu", "tanh"]),
}
NASTY = "<script>alert(1)</script>"
SORTABLE_ROWS = "[...document.querySelectorAll('table.runs tbody tr')]"


def _train(run_dir: Path, lr: float, activation: str, epochs: int) -> float:
    """A real run on digits with a small convnet (~0.2 s once torch is warm, unloaded)."""
    overrides = {
        "training.epochs": epochs,
        "schedule.warmup_epochs": 0,
        "optimizer.lr": lr,
        "model.activation": activation,
        "model.channels": [8, 16],
        "training.batch_size": 128,
        "training.log_every": 2,
    }
    return api.train("digits", overrides, out=run_dir, progress=False).val["val_acc"]


def _write_storage(storage: str, trials: list[dict]) -> None:
    """One real Optuna study per stage, holding the trials as the search would have told it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for stage in RANGES:
        study = optuna.create_study(storage=storage, study_name=f"s-{stage}", direction="maximize")
        for t in (t for t in trials if t["stage"] == stage):
            done = t["state"] == "complete"
            study.add_trial(
                optuna.trial.create_trial(
                    params=t["params"],
                    distributions=DISTRIBUTIONS,
                    value=t["value"] if done else None,
                    state=TrialState.COMPLETE if done else TrialState.PRUNED,
                    intermediate_values=None if done else {1: t["value"]},
                )
            )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study folder as ``trainlab search`` lays it out, with 4 real trials in 2 stages."""
    folder = tmp_path_factory.mktemp("compare") / "study"
    records = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, spinning OpenMP threads cost 10-30x
    try:
        values = [_train(folder / "trials" / f"{t[0]}-{t[1]:04d}", *t[2:5]) for t in TRIALS]
    finally:
        torch.set_num_threads(threads)
    for (stage, number, lr, activation, _, state), value in zip(TRIALS, values, strict=True):
        run_dir = folder / "trials" / f"{stage}-{number:04d}"
        record = {
            "study": f"s-{stage}",
            "stage": stage,
            "number": number,
            "params": {"optimizer.lr": lr, "model.activation": activation},
            "state": state,
            "value": value,
            "reason": "pruned at epoch 1 <median rule>" if state == "pruned" else None,
        }
        (run_dir / "trial.json").write_text(json.dumps(record))
        records.append(record)
    storage = f"sqlite:///{folder / 'study.db'}"
    _write_storage(storage, records)
    stages = [
        {"name": s, "study": f"s-{s}", "trials": 3, "epochs": 2, "ranges": r}
        for s, r in RANGES.items()
    ]
    best = {"stage": "fine", "number": 0, "value": records[3]["value"]}
    best |= {"run_dir": str(folder / "trials" / "fine-0000"), "params": records[3]["params"]}
    search = {
        "storage": storage,
        "study": "s",
        "metric": "val_acc",
        "direction": "maximize",
        "recipe": "digits",
        "space": {"optimizer.lr": "loguniform(1e-4, 1e-2)", "model.activation": "choice"},
        "stages": stages,
        "best": best,
    }
    (folder / "search.json").write_text(json.dumps(search))
    return folder


def _unfinished_copy(src: Path, dst: Path, name: str) -> Path:
    """A run that never finished (no summary.json), with a recipe name that must be escaped."""
    dst.mkdir(parents=True)
    shutil.copy(src / "metrics.jsonl", dst / "metrics.jsonl")
    recipe = (src / "recipe.yaml").read_text().replace("name: digits\n", f"name: '{name}'\n", 1)
    (dst / "recipe.yaml").write_text(recipe)
    return dst


def _sorted_twice(page, column: int) -> tuple:
    """The table's rows after one click on a header (ascending) and after a second (descending)."""
    header = page.locator("table.runs th").nth(column)
    header.click()
    _, ascending = _table(page)
    header.click()
    _, descending = _table(page)
    return ascending, descending


def _table(page) -> tuple[list[str], list[list[str]]]:
    heads = page.evaluate("[...document.querySelectorAll('table.runs th')].map(h => h.textContent)")
    rows = page.evaluate(f"{SORTABLE_ROWS}.map(r => [...r.cells].map(c => c.dataset.v))")
    return heads, rows


def _images_and_shot(page, shot: Path) -> list[dict]:
    images = page.evaluate(
        "[...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete,"
        " width: i.naturalWidth}))"
    )
    page.screenshot(path=str(shot), full_page=True)
    return images


def _assert_page_is_closed(text: str) -> None:
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing from outside the folder
    assert text.count("<script") == 1  # the table sorter, inline


def _assert_loaded(images: list[dict], figures: list[str], page_dir: Path, shot: Path) -> None:
    assert sorted(str((page_dir / i["src"]).resolve()) for i in images) == sorted(figures)
    assert all(i["ok"] and i["width"] > 0 for i in images), images
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_run_folders_page_opens_sorts_and_escapes(study: Path, tmp_path: Path):
    trials = study / "trials"
    odd = _unfinished_copy(trials / "coarse-0002", tmp_path / 'run <b>&"x"', NASTY)
    folders = [trials / "coarse-0000", trials / "coarse-0001", trials / "fine-0000", odd]
    result = compare(folders, tmp_path / "cmp.html", smooth=3)

    assert result["report"] == str(tmp_path / "cmp.html") and result["runs"] == 4
    assert all(Path(f).is_file() and Path(f).parent.name == "cmp_files" for f in result["figures"])
    assert result["axes"]["optimizer.lr"] == "log"  # 1e-4..1e-2: two decades
    assert result["axes"]["model.activation.name"] == "category"
    assert result["axes"]["training.epochs"] == "linear"
    assert set(result["axes"]) == {
        "name",
        "model.activation.name",
        "optimizer.lr",
        "training.epochs",
    }
    finished = {f.name: json.loads((f / "summary.json").read_text()) for f in folders[:3]}
    values = {n: s["val"]["best"]["val_acc"] for n, s in finished.items()}
    assert result["best"]["name"] == max(values, key=values.get)  # the unfinished run is not best
    text = Path(result["report"]).read_text()
    _assert_page_is_closed(text)
    assert "<b>&" not in text and "run &lt;b&gt;&amp;&quot;x&quot;" in text
    assert NASTY not in text and html_escaped(NASTY) in text
    assert "test_acc (test, not used for selection)" in text

    with open_page(Path(result["report"]).as_uri()) as (page, problems):
        images = _images_and_shot(page, tmp_path / "shot.png")
        heads, before = _table(page)
        ascending, descending = _sorted_twice(page, heads.index("optimizer.lr"))
        test = page.locator("table.runs th").nth(len(heads) - 1)
        test.click()
        _, by_test = _table(page)
        test.click()
        _, by_test_down = _table(page)
    assert problems == []
    _assert_loaded(images, result["figures"], tmp_path, tmp_path / "shot.png")
    run, state, val, lr = (heads.index(h) for h in ("run", "state", "val_acc", "optimizer.lr"))
    ranked = [float(r[val]) for r in before]
    assert ranked == sorted(ranked, reverse=True)  # best first by default
    assert {r[run]: r[state] for r in before}[odd.name] == "unfinished"
    # one click: by lr ascending, a second: descending (so at least one changed the order)
    by_lr = ["coarse-0000", "coarse-0001", "fine-0000", odd.name]
    assert [r[run] for r in ascending] == by_lr and [r[run] for r in descending] == by_lr[::-1]
    assert [float(r[lr]) for r in ascending] == [1e-4, 1e-3, 3e-3, 1e-2]
    # the unfinished run has no test figure: an empty cell sorts last either way
    assert heads[-1] == "test_acc (test, not used for selection)"
    assert by_test[-1][run] == by_test_down[-1][run] == odd.name
    tests = {n: s["test_acc"] for n, s in finished.items()}
    assert [r[run] for r in by_test[:3]] == sorted(tests, key=tests.get)


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_study_page_stages_importances_and_sort(study: Path, tmp_path: Path):
    result = compare([study], tmp_path / "study.html")

    assert result["runs"] == 4 and result["axes"] == {
        "optimizer.lr": "log",  # loguniform in the space
        "model.activation": "category",  # a choice
    }
    names = [Path(f).name for f in result["figures"]]
    assert names == [
        "curves.png",
        "param-00-optimizer.lr.png",
        "param-01-model.activation.png",
        "importances.png",  # the coarse stage has 2 complete trials in the storage
    ]
    # the search's own best (search.json), although the pruned trial's value is higher
    assert result["best"]["name"] == "fine-0000" and result["best"]["stage"] == "fine"
    text = Path(result["report"]).read_text()
    _assert_page_is_closed(text)
    assert "pruned at epoch 1 &lt;median rule&gt;" in text
    assert "stage fine: 1 complete trial(s) in the storage, at least 2 needed" in text
    assert "<li>coarse (study s-coarse): 3 trials x 2 epochs; optimizer.lr loguniform" in text

    with open_page(Path(result["report"]).as_uri()) as (page, problems):
        images = _images_and_shot(page, tmp_path / "shot.png")
        heads, before = _table(page)
        ascending, descending = _sorted_twice(page, heads.index("val_acc"))
    assert problems == []
    _assert_loaded(images, result["figures"], tmp_path, tmp_path / "shot.png")
    run, stage, state, val = (heads.index(h) for h in ("run", "stage", "state", "val_acc"))
    expected = sorted(
        (json.loads((study / "trials" / r[run] / "trial.json").read_text())["value"], r[run])
        for r in before
    )
    assert [r[run] for r in ascending] == [name for _, name in expected]
    assert [r[run] for r in descending] == [name for _, name in reversed(expected)]
    assert [r[run] for r in before] == [r[run] for r in descending]  # the default: best first
    assert {r[run]: (r[stage], r[state]) for r in before}["coarse-0002"] == ("coarse", "pruned")


def test_missing_storage_is_one_line_and_creates_nothing(study: Path, tmp_path: Path):
    folder = tmp_path / "study"
    shutil.copytree(study / "trials" / "coarse-0001", folder / "trials" / "coarse-0001")
    search = json.loads((study / "search.json").read_text())
    search["storage"] = f"sqlite:///{folder / 'gone.db'}"
    (folder / "search.json").write_text(json.dumps(search))
    result = compare([folder], tmp_path / "p.html")
    assert [Path(f).name for f in result["figures"]][-1] != "importances.png"
    assert (
        f"the study storage sqlite:///{folder / 'gone.db'} does not exist"
        in Path(result["report"]).read_text()
    )
    assert not (folder / "gone.db").exists()


def test_axis_rule():
    assert figs.axis_kind([1e-3, 2e-3], {"kind": "loguniform", "low": 1e-3, "high": 2e-3}) == "log"
    assert figs.axis_kind([16, 128], {"kind": "int", "low": 16, "high": 128, "log": True}) == "log"
    assert figs.axis_kind([16, 128], {"kind": "int", "low": 16, "high": 128, "log": False}) == (
        "linear"
    )
    assert figs.axis_kind([1e-4, 1e-2], {"kind": "uniform", "low": 1e-4, "high": 1e-2}) == "linear"
    assert figs.axis_kind([32, 64], {"kind": "choice", "choices": [32, 64]}) == "category"
    assert figs.axis_kind([0.1, 0.2], {"kind": "grid", "choices": [0.1, 0.2]}) == "category"
    # plain run folders: the values decide
    assert figs.axis_kind([1e-4, 3e-3, 1e-2]) == "log"
    assert figs.axis_kind([1e-3, 3e-3, 9e-3]) == "linear"  # under 2 decades
    assert figs.axis_kind([0.0, 1e-2, 1.0]) == "linear"  # a zero has no logarithm
    assert figs.axis_kind(["relu", "tanh"]) == "category"
    assert figs.axis_kind([True, False]) == "category"
    assert figs.axis_kind([[32, 64], [8]]) == "category"


def test_the_figure_follows_the_axis_rule():
    points = [(1e-4, 0.2, None, "complete"), (1e-2, 0.9, None, "complete")]
    assert figs.param_figure("lr", points, "log", "val_acc").axes[0].get_xscale() == "log"
    assert figs.param_figure("lr", points, "linear", "val_acc").axes[0].get_xscale() == "linear"
    cats = [("tanh", 0.5, "a", "complete"), ("relu", 0.7, "b", "pruned"), ("$x", 0.1, "a", "")]
    ax = figs.param_figure("act", cats, "category", "val_acc", stages=["a", "b"]).axes[0]
    ax.figure.canvas.draw()  # a lone "$" must not be read as mathtext
    assert [t.get_text() for t in ax.get_xticklabels()] == [r"\$x", "relu", "tanh"]


def test_plain_hyperparameters_are_the_differing_keys():
    a = {"seed": 0, "model": {"channels": [8, 16], "activation": {"name": "relu"}}, "x": None}
    b = {"seed": 1, "model": {"channels": [8, 32], "activation": {"name": "relu"}}, "x": None}
    c = {"seed": 0, "model": {"channels": [8, 16], "activation": {"name": "tanh"}}, "x": {"k": 1}}
    assert plain_hyperparameters([a, b, c]) == [
        "seed",
        "model.channels[1]",
        "model.activation.name",
        "x",
    ]
    assert plain_hyperparameters([a]) == [] and plain_hyperparameters([a, None, a]) == []


def _error(paths: list[Path], out: Path) -> str:
    with pytest.raises(RunFolderError) as caught:
        compare(paths, out)
    message = str(caught.value)
    assert "\n" not in message and not out.exists()  # one line, and no page written
    return message


def test_errors_name_the_path_and_what_was_expected(study: Path, tmp_path: Path):
    out = tmp_path / "x.html"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error([empty], out) == (
        f"{empty}: not a run folder (recipe.yaml, metrics.jsonl) nor a study folder (search.json)"
    )
    gone = tmp_path / "nowhere"
    assert _error([gone], out) == f"{gone}: no such folder; expected a run or study folder"
    assert _error([], out).startswith("compare: no folders given; expected run folders")
    run = study / "trials" / "coarse-0000"
    assert _error([study, run], out) == f"{study}: a study folder is compared on its own"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "search.json").write_text(json.dumps({"metric": "val_acc", "direction": "maximize"}))
    assert _error([bare], out).startswith(f"{bare / 'trials'}: no trials yet; expected folders")
    (bare / "search.json").write_text(json.dumps({"metric": "val_acc"}))
    assert _error([bare], out) == f"{bare / 'search.json'}: no 'direction' key"
    (bare / "search.json").write_text("{not json")
    assert _error([bare], out).startswith(f"{bare / 'search.json'}: not valid JSON")


def test_many_runs_are_coloured_by_rank(tmp_path: Path):
    """Past a legend's worth of runs the colour is the rank: darker is better, the best red and
    drawn on top."""
    from matplotlib.colors import to_rgb

    from trainlab.tuning.compare import Run

    def run(i: int) -> Run:
        train = [{"step": s, "loss": 2.0 - 0.01 * s - 0.1 * i} for s in range(1, 41)]
        val = [{"step": 20 * e, "epoch": e, "val_loss": 1.5 - 0.1 * i, "val_acc": 0.05 * i}
               for e in (1, 2)]  # fmt: skip
        return Run(f"r{i}", tmp_path, "complete", train + val, None, None, value=0.05 * i)

    runs = [run(i) for i in range(14)][::-1]  # best first, as compare ranks them
    ax = figs.curves_figure(runs, runs[0]).axes[0]
    thick = [line for line in ax.lines if line.get_linewidth() > 1]
    assert len(thick) == 14 and thick[-1].get_color() == figs.BEST_COLOUR  # the best on top
    brightness = [sum(to_rgb(line.get_color())) for line in thick[:-1]]  # worst ... second
    assert brightness == sorted(brightness, reverse=True)  # pale for the worst, dark for better
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["r13 (best)"]
