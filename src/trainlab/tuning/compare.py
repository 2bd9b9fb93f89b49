"""``trainlab compare``: the lectures' cross-validation "command center", one static HTML page
that shows many runs side by side (lecture 002, steps 4-7: coarse search, refine, look at the
loss curves, go again).

Input: several run folders (each written by ``trainlab train``), or one study folder written by
``trainlab search`` (``search.json`` + ``trials/<stage>-<NNNN>/``, each an ordinary run folder
with a ``trial.json``). Output: ``OUT`` (the page) and ``<OUT stem>_files/`` (its PNGs), moved
or zipped together: the page references them by relative path, has no external resource, and
its only script is the few inline lines that sort the table. Every string on it is escaped.

Top to bottom: every run's learning curves on one figure; the table of runs (sortable by any
column, best first by the validation metric; test metrics shown but never used to rank); the
metric against each hyperparameter; Optuna's parameter importances for a study. Selection is on
validation only: a run's value is its best validation metric (the study's own value for a
trial), the test column is labelled as not used for selection.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from trainlab.diagnosis.curves import load_records, load_summary, split_records
from trainlab.diagnosis.report import html_page  # the doctor page's frame and style
from trainlab.engine.best import improved
from trainlab.errors import RunFolderError
from trainlab.files import atomic_write
from trainlab.recipe import recipe_differences
from trainlab.tuning import compare_figures as figs
from trainlab.tuning.trial import best_of

__all__ = ["Run", "compare", "plain_hyperparameters"]

DEFAULT_METRIC = "val_acc"  # what the trainer selects on when nothing else is said
MIN_IMPORTANCE_TRIALS = 2
STATE_BADGE = {"complete": "ok", "failed": "fail"}  # anything else (pruned, running...) warns


@dataclass
class Run:
    """One row of the page: a run folder, what it logged, and what the comparison reads of it."""

    name: str
    run_dir: Path
    state: str  # complete | unfinished (no summary.json) | a trial's: pruned, failed, running
    records: list[dict[str, Any]]
    summary: dict[str, Any] | None
    recipe: dict[str, Any] | None
    params: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    value: float | None = None  # the validation metric the runs are ranked by
    stage: str | None = None
    number: int | None = None

    @property
    def train(self) -> list[tuple[float, float]]:
        """(step, training loss) of every logged training record."""
        return [(r["step"], r["loss"]) for r in split_records(self.records)[0]]

    @property
    def val(self) -> list[dict[str, Any]]:
        """The validation records (``val_*`` keys, one per evaluation, with ``epoch``)."""
        return split_records(self.records)[1]

    @property
    def epochs(self) -> int | None:
        """Epochs run: the summary's count, else the last epoch that was evaluated."""
        if self.summary and isinstance(self.summary.get("epochs_run"), int):
            return self.summary["epochs_run"]
        epochs = [int(r["epoch"]) for r in self.val if "epoch" in r]
        return max(epochs) if epochs else None

    def test(self, metric: str) -> float | None:
        """The test counterpart of ``metric`` from summary.json (shown, never ranked on)."""
        value = (self.summary or {}).get("test_" + metric.removeprefix("val_"))
        return value if isinstance(value, int | float) else None


@dataclass
class Comparison:
    """Everything the page shows: the runs in rank order and how they are ranked."""

    title: str
    runs: list[Run]
    metric: str
    maximize: bool
    params: list[str]
    specs: dict[str, list[tuple[str, dict[str, Any]]]]  # param -> [(stage, range)] (a study)
    stages: list[str]
    best: Run | None
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # why importances are missing
    stage_lines: list[str] = field(default_factory=list)  # each stage of a study, in words


# ----------------------------------------------------------------------------------------------
# reading run folders


def _is_run_folder(path: Path) -> bool:
    return (path / "recipe.yaml").is_file() or (path / "metrics.jsonl").is_file()


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def read_run(run_dir: Path) -> Run:
    """A run folder as a row: its records (none yet is fine), summary (missing: unfinished) and
    recipe dump."""
    log = run_dir / "metrics.jsonl"
    records = load_records(log) if log.is_file() else []
    summary = load_summary(run_dir)
    return Run(
        name=run_dir.name,
        run_dir=run_dir,
        state="complete" if summary is not None else "unfinished",
        records=records,
        summary=summary,
        recipe=_read_yaml(run_dir / "recipe.yaml"),
    )


def best_value(run: Run, metric: str, maximize: bool) -> float | None:
    """The best ``metric`` over the run's validations (what a trial of a search returns)."""
    return best_of(run.val, metric, maximize)


def _dotted(dump: Any, key: str) -> Any:
    """The value at a dotted key of a recipe dump (``model.channels``, ``augment[0].padding``);
    None where the run's recipe has no such key."""
    for part in key.replace("[", ".[").split("."):
        if part.startswith("["):
            index = int(part[1:-1])
            dump = dump[index] if isinstance(dump, list) and index < len(dump) else None
        else:
            dump = dump.get(part) if isinstance(dump, dict) else None
    return dump


def plain_hyperparameters(recipes: Sequence[dict[str, Any] | None]) -> list[str]:
    """The dotted recipe keys whose values differ among the runs (each against the first; the
    union, in the order first seen). ``seed`` stays when it differs: it is a real difference."""
    known = [r for r in recipes if r is not None]
    keys: list[str] = []
    for other in known[1:]:
        keys += [k for k in recipe_differences(known[0], other) if k not in keys]
    return keys


def _plain_runs(paths: Sequence[Path]) -> Comparison:
    runs = [read_run(p) for p in paths]
    metric = next(
        (
            r.summary["val"]["metric"]
            for r in runs
            if isinstance((r.summary or {}).get("val"), dict) and "metric" in r.summary["val"]
        ),
        DEFAULT_METRIC,
    )
    maximize = improved(1.0, 0.0, metric)  # the trainer's own rule: lower is better for a loss
    params = plain_hyperparameters([r.recipe for r in runs])
    for run in runs:
        run.value = best_value(run, metric, maximize)
        run.params = {k: _dotted(run.recipe, k) for k in params}
    ranked = _ranked(runs, maximize)
    done = [r for r in ranked if r.state == "complete" and r.value is not None]
    return Comparison(
        title=f"compare: {len(runs)} runs",
        runs=ranked,
        metric=metric,
        maximize=maximize,
        params=params,
        specs={},
        stages=[],
        best=done[0] if done else next((r for r in ranked if r.value is not None), None),
        notes=["Parameter importances need a study (trainlab search); these are run folders."],
    )


def _ranked(runs: list[Run], maximize: bool) -> list[Run]:
    """Best first by the validation metric; runs without one last, in their given order."""
    scored = [r for r in runs if r.value is not None]
    scored.sort(key=lambda r: r.value if not maximize else -r.value)  # type: ignore[operator]
    return scored + [r for r in runs if r.value is None]


# ----------------------------------------------------------------------------------------------
# reading a study folder


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RunFolderError(f"{path}: cannot read the {what} ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _study_runs(folder: Path) -> Comparison:
    search = _read_json(folder / "search.json", "study description")
    for key in ("metric", "direction"):
        if key not in search:
            raise RunFolderError(f"{folder / 'search.json'}: no {key!r} key")
    maximize = search["direction"] == "maximize"
    trial_dirs = sorted(p.parent for p in (folder / "trials").glob("*/trial.json"))
    if not trial_dirs:
        raise RunFolderError(
            f"{folder / 'trials'}: no trials yet; expected folders <stage>-<NNNN> with trial.json"
        )
    runs = [_trial_run(d, search["metric"], maximize) for d in trial_dirs]
    described = _stages(search)
    stages = [s["name"] for s in described]
    stages += sorted({r.stage for r in runs if r.stage and r.stage not in stages})
    specs: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for stage in described:
        for key, spec in (stage.get("ranges") or {}).items():
            if isinstance(spec, dict):
                specs.setdefault(key, []).append((stage["name"], spec))
    space = search.get("space") if isinstance(search.get("space"), dict) else {}
    # the space's order first, then any other key a trial recorded
    params = list(dict.fromkeys([*space, *(k for r in runs for k in r.params)]))
    params = [k for k in params if any(k in r.params for r in runs)]
    ranked = _ranked(runs, maximize)
    comparison = Comparison(
        title=f"study {search.get('study', folder.name)}: {len(runs)} trials",
        runs=ranked,
        metric=search["metric"],
        maximize=maximize,
        params=params,
        specs=specs,
        stages=stages,
        best=_study_best(search.get("best"), ranked),
        stage_lines=[_describe_stage(s) for s in described],
    )
    comparison.importances, comparison.notes = stage_importances(search)
    return comparison


def _stages(search: dict[str, Any]) -> list[dict[str, Any]]:
    """search.json's stages that have a name (each its own Optuna study, named in ``study``)."""
    stages = search.get("stages")
    return [s for s in stages or [] if isinstance(s, dict) and s.get("name")]


def _describe_stage(stage: dict[str, Any]) -> str:
    """``coarse (study NAME-coarse): 24 trials x 3 epochs; optimizer.lr loguniform 0.0001..0.01``"""
    ranges = []
    for key, spec in (stage.get("ranges") or {}).items():
        if not isinstance(spec, dict):
            continue
        if "choices" in spec:
            shown = ", ".join(figs.category_label(v) for v in spec["choices"])
        else:
            shown = f"{spec.get('low')}..{spec.get('high')}" + (" (log)" if spec.get("log") else "")
        ranges.append(f"{key} {spec.get('kind')} {shown}")
    size = f"{stage.get('trials', '?')} trials x {stage.get('epochs', '?')} epochs"
    return f"{stage.get('name')} (study {stage.get('study')}): {size}; " + "; ".join(ranges)


def _trial_run(run_dir: Path, metric: str, maximize: bool) -> Run:
    trial = _read_json(run_dir / "trial.json", "trial record")
    run = read_run(run_dir)
    run.state = str(trial.get("state") or run.state)
    run.reason = trial.get("reason")
    run.stage, run.number = trial.get("stage"), trial.get("number")
    run.params = dict(trial.get("params") or {})
    value = trial.get("value")
    run.value = (
        float(value) if isinstance(value, int | float) else best_value(run, metric, maximize)
    )
    return run


def _study_best(best: Any, ranked: list[Run]) -> Run | None:
    """The search's own best trial (search.json) when it names one shown here, else the best
    complete trial by value."""
    if isinstance(best, dict):
        for run in ranked:
            path = best.get("run_dir")
            same_dir = bool(path) and Path(path).resolve() == run.run_dir.resolve()
            if same_dir or (best.get("stage"), best.get("number")) == (run.stage, run.number):
                return run
    return next((r for r in ranked if r.state == "complete" and r.value is not None), None)


def stage_importances(search: dict[str, Any]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Optuna's parameter importances of each stage with enough complete trials, read from the
    study's storage; and one line for each stage (or the storage) that has none, saying why."""
    storage, notes, found = search.get("storage"), [], {}
    stages = [s for s in _stages(search) if s.get("study")]
    if not storage or not stages:
        return {}, ["Parameter importances: search.json names no storage or no stage studies."]
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).is_file():
        # opening a missing SQLite file would create an empty database: say so instead
        return {}, [f"Parameter importances: the study storage {storage} does not exist."]
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    for stage in stages:
        try:
            study = optuna.load_study(study_name=stage["study"], storage=storage)
            complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
            if len(complete) < MIN_IMPORTANCE_TRIALS:
                notes.append(
                    f"Parameter importances, stage {stage['name']}: {len(complete)} complete "
                    f"trial(s) in the storage, at least {MIN_IMPORTANCE_TRIALS} needed."
                )
                continue
            evaluator = FanovaImportanceEvaluator(seed=0)  # the same bars on every rendering
            found[stage["name"]] = dict(get_param_importances(study, evaluator=evaluator))
        except Exception as e:  # noqa: BLE001  (an unreachable storage costs one figure only)
            notes.append(
                f"Parameter importances, stage {stage['name']}: cannot read study "
                f"{stage['study']!r} from {storage} ({type(e).__name__}: {_one_line(e)})"
            )
    return found, notes


# ----------------------------------------------------------------------------------------------
# the page


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _sort_key(value: Any) -> str:
    """What the table sorts a cell by: a number as JavaScript's ``Number()`` reads it (a
    diverged run's ``inf`` loss too), text as it is, nothing as "" (sorted last)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value) if isinstance(value, int | float) else str(value)


def _cell(value: Any, text: str | None = None, cls: str = "") -> str:
    """A table cell with its sort key (``data-v``) and its text (escaped here unless given)."""
    key = _sort_key(value)
    shown = "–" if value is None else (text if text is not None else _e(_number(value)))
    css = f' class="{cls}"' if cls else ""
    return f'<td{css} data-v="{_e(key)}">{shown}</td>'


def _table(c: Comparison, page_dir: Path) -> str:
    study = bool(c.stages)
    test_name = "test_" + c.metric.removeprefix("val_")
    heads = ["rank", "run", *(["stage"] if study else []), "state", c.metric, "epochs"]
    heads += [*c.params, f"{test_name} (test, not used for selection)"]
    numeric = {"rank", c.metric, "epochs", heads[-1]}
    numeric |= {p for p in c.params if _numeric([r.params.get(p) for r in c.runs])}
    th = "".join(
        f'<th data-type="{"num" if h in numeric else "text"}" title="click to sort">{_e(h)}</th>'
        for h in heads
    )
    rows = []
    for i, run in enumerate(c.runs, 1):
        link = quote(os.path.relpath(run.run_dir, page_dir))
        name = f'<a href="{_e(link)}">{_e(run.name)}</a>' + (" ★" if run is c.best else "")
        state = f'<span class="badge {STATE_BADGE.get(run.state, "warn")}">{_e(run.state)}</span>'
        if run.reason:
            state += f' <span class="reason">{_e(run.reason)}</span>'
        cells = [_cell(i), _cell(run.name, name, "run")]
        cells += [_cell(run.stage)] if study else []
        cells += [_cell(run.state, state), _cell(run.value), _cell(run.epochs)]
        cells += [_param_cell(run.params.get(p)) for p in c.params]
        cells.append(_cell(run.test(c.metric), cls="test"))
        best = ' class="best"' if run is c.best else ""
        rows.append(f"<tr{best}>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="runs"><thead><tr>{th}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


def _numeric(values: list[Any]) -> bool:
    """Whether a column sorts as numbers: every value it has is one (empty cells sort last)."""
    return all(figs.axis_kind([v]) != "category" for v in values if v is not None)


def _param_cell(value: Any) -> str:
    if figs.axis_kind([value]) != "category":
        return _cell(value)
    return _cell(None if value is None else figs.category_label(value))


_SORT_JS = """
for (const th of document.querySelectorAll("table.runs th")) {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0], col = th.cellIndex;
    const asc = th.dataset.dir !== "asc", num = th.dataset.type === "num";
    for (const h of th.parentNode.children) delete h.dataset.dir;
    th.dataset.dir = asc ? "asc" : "desc";
    const rows = [...body.rows].sort((a, b) => {
      const x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      if (x === "" || y === "") return (x === "") - (y === "");  /* empty cells last */
      const d = num ? Number(x) - Number(y) : x.localeCompare(y);
      return asc ? d : -d;
    });
    for (const r of rows) body.appendChild(r);
  });
}
"""

_CSS = """
main { max-width: 1500px; }
table.runs { font-size: 13px; } table.runs th { cursor: pointer; white-space: nowrap; }
table.runs th[data-dir=asc]::after { content: " ▲"; } table.runs th[data-dir=desc]::after {
  content: " ▼"; }
tr.best td { background: #fff1f0; font-weight: 600; } td.test { color: var(--muted); }
td.run { white-space: nowrap; } div.scroll { overflow-x: auto; }
ul.stages { font-size: 13px; margin: 0 0 12px; } ul.stages code { font-size: 12px; }
span.reason { color: var(--muted); font-size: 12px; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; } .grid figure { margin: 0; }
p.note { color: var(--muted); font-style: italic; }
"""


def _figure(src: str, alt: str) -> str:
    return f'<figure><img src="{_e(quote(src))}" alt="{_e(alt)}"></figure>'


def render_page(c: Comparison, page_dir: Path, figures: dict[str, str]) -> str:
    """The page as a string; ``figures`` maps a role (``curves``, ``param:KEY``,
    ``importances``) to the figure's path relative to ``page_dir``."""
    direction = "higher" if c.maximize else "lower"
    best = (
        f"best: <b>{_e(c.best.name)}</b>, {_e(c.metric)} = {_e(_number(c.best.value))}"
        if c.best
        else "no run has a validation metric yet"
    )
    params = [
        _figure(figures[f"param:{p}"], f"{c.metric} vs {p}")
        for p in c.params
        if f"param:{p}" in figures
    ]
    imp = (
        _figure(figures["importances"], "parameter importances") if "importances" in figures else ""
    )
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in c.notes)
    stages = "".join(f"<li>{_e(line)}</li>" for line in c.stage_lines)
    stages = f'<ul class="stages">{stages}</ul>' if stages else ""
    grid = (
        f'<div class="grid">{"".join(params)}</div>'
        if params
        else '<p class="note">The runs differ in no hyperparameter.</p>'
    )
    ranked = f"Ranked by {_e(c.metric)} ({direction} is better, on validation); {best}."
    body = f"""<p class="verdict">{ranked}</p>
{stages}
<h2>Learning curves</h2>
{_figure(figures["curves"], "learning curves of every run")}
<h2>Runs</h2>
{_table(c, page_dir)}
<h2>{_e(c.metric)} against each hyperparameter</h2>
{grid}
<h2>Parameter importances</h2>
{imp}{notes}"""
    return html_page(c.title, body, _CSS, _SORT_JS)


# ----------------------------------------------------------------------------------------------
# the command


def _comparison(paths: Sequence[str | Path]) -> Comparison:
    """Run folders or one study folder, checked: each path names what it is not."""
    folders = [Path(p).resolve() for p in paths]
    if not folders:
        raise RunFolderError("compare: no folders given; expected run folders or a study folder")
    for folder in folders:
        if not folder.is_dir():
            raise RunFolderError(f"{folder}: no such folder; expected a run or study folder")
    studies = [f for f in folders if (f / "search.json").is_file()]
    if studies:
        if len(folders) > 1:
            raise RunFolderError(f"{studies[0]}: a study folder is compared on its own")
        return _study_runs(studies[0])
    for folder in folders:
        if not _is_run_folder(folder):
            raise RunFolderError(
                f"{folder}: not a run folder (recipe.yaml, metrics.jsonl) "
                "nor a study folder (search.json)"
            )
    return _plain_runs(folders)


def _slug(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in key)


def _axes(c: Comparison) -> dict[str, figs.AxisKind]:
    """How each hyperparameter's x-axis is drawn (the search space's kind, else its values)."""
    return {
        key: figs.axis_kind(
            [r.params[key] for r in c.runs if r.value is not None and key in r.params],
            next((spec for _, spec in c.specs.get(key, [])), None),
        )
        for key in c.params
    }


def _write_figures(
    c: Comparison, axes: dict[str, figs.AxisKind], folder: Path, window: int
) -> dict[str, Path]:
    curves = figs.curves_figure(c.runs, c.best, window)
    paths = {"curves": figs.save(curves, folder / "curves.png")}
    for i, key in enumerate(c.params):
        points = [
            (r.params[key], r.value, r.stage, r.state)
            for r in c.runs
            if r.value is not None and key in r.params
        ]
        fig = figs.param_figure(key, points, axes[key], c.metric, c.specs.get(key, []), c.stages)
        paths[f"param:{key}"] = figs.save(fig, folder / f"param-{i:02d}-{_slug(key)}.png")
    if c.importances:
        fig = figs.importances_figure(c.importances)
        paths["importances"] = figs.save(fig, folder / "importances.png")
    return paths


def compare(
    paths: Sequence[str | Path], out: str | Path = "compare.html", *, smooth: int = 0
) -> dict[str, Any]:
    """Write the comparison page ``out`` (and its figures in ``<out stem>_files/``) for run
    folders or one study folder; returns ``{"report", "runs", "figures", "best", "axes"}``.

    ``smooth``: the moving average's width in logged records (0: about a tenth of them).
    ``axes`` says how each hyperparameter's x-axis was drawn (log, linear or category).
    Raises :class:`~trainlab.errors.RunFolderError` naming a path that is neither a run nor a
    study folder, or a study with no trials.
    """
    c = _comparison(paths)
    out = Path(out).resolve()
    folder = out.parent / f"{out.stem}_files"
    axes = _axes(c)
    figures = _write_figures(c, axes, folder, smooth)
    relative = {k: os.path.relpath(p, out.parent) for k, p in figures.items()}
    atomic_write(out, render_page(c, out.parent, relative).encode("utf-8"))
    best = c.best
    return {
        "report": str(out),
        "runs": len(c.runs),
        "figures": [str(p) for p in figures.values()],
        "best": None
        if best is None
        else {
            "name": best.name,
            "run_dir": str(best.run_dir),
            "metric": c.metric,
            "value": best.value,
            "stage": best.stage,
            "params": best.params,
        },
        "axes": axes,
        "metric": c.metric,
        "direction": "maximize" if c.maximize else "minimize",
    }
