"""The ``trainlab`` command line: one typer app; every command takes ``--json``.

User errors (bad recipe, bad data, a run folder in the way) print one line to stderr and exit
with code 2; with ``--json`` the last stdout line is always one JSON object.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import warnings
from typing import Any

import typer

from trainlab import cli_ensemble, cli_search
from trainlab.cli_common import emit as _emit
from trainlab.cli_common import make_console, split_recipe_args, user_errors
from trainlab.errors import TrainlabError, TrainlabWarning

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train neural networks from one YAML recipe, the way the lectures teach.",
)


def _version(value: bool) -> None:
    """``--version``: the number from trainlab.version and exit, before any command imports
    torch (``import trainlab`` itself stays torch-free; see tests/test_imports.py)."""
    if value:
        from trainlab.version import __version__

        print(f"trainlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Train neural networks from one YAML recipe, the way the lectures teach."""


@app.command()
@user_errors
def train(
    args: list[str] = typer.Argument(
        None,
        metavar="[RECIPE] [KEY=VALUE]...",
        help="recipe YAML (default: recipes/digits.yaml), overrides",
    ),
    out: str = typer.Option(None, "--out", "-o", help="run folder (default: runs/NAME-TIME)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON (last line)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    seeds: int = typer.Option(
        None, "--seeds", help="train on N seeds (seed, seed+1, ...) into OUT/seed-S; mean +- std"
    ),
) -> None:
    """Train a recipe into a run folder: metrics.jsonl, checkpoints, model, summary.json."""
    from trainlab.api import train as run_train

    recipe, overrides = split_recipe_args(args or [])
    if seeds is not None:
        return _train_seeds(recipe, overrides, seeds, out, resume, progress, as_json)
    result = run_train(recipe, overrides, out=out, resume=resume, progress=progress)
    if os.environ.get("RANK", "0") != "0":
        return  # torchrun: rank 0 reports
    if not as_json:
        _print_summary(result.summary)
    _emit(result.summary, as_json)


def _train_seeds(
    recipe: str | None,
    overrides: list[str],
    seeds: int,
    out: str | None,
    resume: bool,
    progress: bool,
    as_json: bool,
) -> None:
    """``train --seeds N``: each seed's summary line, then mean +- std of every figure.

    Finished seeds are kept and a started one resumes, so ``--resume`` changes nothing here:
    re-running the same command finishes the set."""
    from trainlab.api import train_seeds

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # rank 1 would read folders rank 0 writes
        raise TrainlabError("--seeds: not under torchrun; run one torchrun command per seed "
                            "(seed=S --out DIR/seed-S)")  # fmt: skip
    if recipe is None and out is not None and resume:
        raise TrainlabError("--seeds with --resume: give the recipe again (each seed's folder "
                            "holds its own recipe.yaml)")  # fmt: skip
    show = None if as_json else (lambda r: _print_summary(r.summary))
    result = train_seeds(recipe, overrides, seeds, out=out, progress=progress, on_run=show)
    if not as_json:
        console = make_console()
        for key, mean in result["mean"].items():
            console.print(f"{key} {mean:.4f} +- {result['std'][key]:.4f}", highlight=False)
        if "ensemble" in result:  # the seeds' runs as one ensemble
            ens = result["ensemble"]
            console.print(
                f"ensemble of the {result['n']} seeds: test_acc {ens['test_acc']:.4f} "
                f"({100 * ens['gain_over_mean_member']:+.2f} points over the mean seed), "
                f"test_ece {ens['test_ece']:.4f}",
                highlight=False,
            )
        console.print(f"{result['n']} seeds -> {result['file']}", highlight=False)
    _emit(result, as_json)


def _print_summary(summary: dict[str, Any]) -> None:
    """The run's result as one line (a script's ``| tail -1`` reads it whole)."""
    top = next((k for k in summary if k.startswith("test_top")), None)
    extra = f"  {top} {summary[top]:.4f}" if top else ""
    if "raw" in summary:  # training.ema: the figures are the average's; the live weights' too
        extra += f"  (live weights: test_acc {summary['raw']['test_acc']:.4f})"
    for line in summary.get("tta", {}).get("lines", []):  # evaluation.tta: before, so the
        make_console().print(line, highlight=False)  # result stays the last line
    best = summary["val"]["best"]
    val = f"val_acc {best['val_acc']:.4f} (epoch {best['epoch']})  " if "val_acc" in best else ""
    make_console().print(
        f"{val}[bold]test_acc {summary['test_acc']:.4f}[/]  test_loss {summary['test_loss']:.4f}"
        f"{extra}  epochs {summary['epochs_run']}  {summary['wall_s']:.1f}s  "
        f"{summary['samples_per_s']:,.0f} samples/s  -> {summary['run_dir']}"
    )


TTA_HELP = (
    "test-time augmentation, probabilities averaged over fixed views: identity | flip | crops"
    " | five_crops | multiscale | translate | flip_translate (images), shifts (1-D signals),"
    " fmp (fractional pooling draws)"
)
MC_HELP = "MC dropout: T passes with dropout on, averaged (predict adds entropy and variance)"


@app.command()
@user_errors
def evaluate(
    run_dir: str = typer.Argument(..., help="a run folder written by trainlab train"),
    weights: str = typer.Option("final", help="final | best | last"),
    tta: str = typer.Option(None, "--tta", help=TTA_HELP + "; several, comma-separated"),
    mc_dropout: int = typer.Option(None, "--mc-dropout", help=MC_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """Test loss, accuracy, per-class accuracy and a confusion-matrix PNG of a trained run."""
    from trainlab.api import evaluate as run_evaluate

    if weights not in {"final", "best", "last"}:
        raise TrainlabError(f"--weights {weights!r}: expected final, best or last")
    result = run_evaluate(run_dir, weights=weights, tta=tta, mc_dropout=mc_dropout)
    if not as_json:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"{run_dir} ({weights} weights): test_acc {result['test_acc']:.4f}, "
            f"test_loss {result['test_loss']:.4f}"
        )
        table.add_column("class")
        table.add_column("accuracy", justify="right")
        for name, acc in result["per_class_acc"].items():
            table.add_row(name, f"{acc:.4f}")
        Console().print(table)
        if result["no_test_examples"]:  # absent from the table: no accuracy was measured
            Console().print(f"no test examples: {', '.join(result['no_test_examples'])}")
        Console().print(f"confusion matrix: {result['confusion_png']}")
        print(*_calibration_lines(result), sep="\n")
        for line in result.get("tta", {}).get("lines", []):  # --tta / --mc-dropout gains
            print(line)
    _emit(result, as_json)


def _calibration_lines(result: dict[str, Any]) -> list[str]:
    """``calibration: nll 0.129 ece 0.098 brier 0.032; T=0.455 (val): nll 0.027
    ece 0.006`` and the reliability diagram's path, each within 80 columns."""
    report = result["calibration"]
    line = "calibration: " + " ".join(
        f"{k} {result[f'test_{k}']:.3f}" for k in ("nll", "ece", "brier")
    )
    if report.get("separable"):
        line += "; val all right: no T to fit"
    elif "scaled" in report["test"]:
        scaled = report["test"]["scaled"]
        line += (
            f"; T={report['temperature']:.3g} (val): "
            f"nll {scaled['nll']:.3f} ece {scaled['ece']:.3f}"
        )
    lines = [line]
    if "reliability_png" in report:
        lines.append(f"reliability diagram: {report['reliability_png']}")
    return lines


@app.command()
@user_errors
def predict(
    run_dir: str = typer.Argument(..., help="a run folder written by trainlab train"),
    inputs: str = typer.Argument(
        ..., help=".npz/.npy, a CSV with the training columns, an image, or a folder of images"
    ),
    out: str = typer.Option(None, "--out", "-o", help="also write one CSV row per input"),
    weights: str = typer.Option("final", help="final | best | last"),
    tta: str = typer.Option(None, "--tta", help=TTA_HELP),
    mc_dropout: int = typer.Option(None, "--mc-dropout", help=MC_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """Class, class name and probabilities of each input (accuracy when they carry labels)."""
    from trainlab.api import predict as run_predict

    result = run_predict(run_dir, inputs, out=out, weights=weights, tta=tta, mc_dropout=mc_dropout)
    if not as_json:
        _print_predictions(result)
    _emit(result, as_json)


def _print_predictions(result: dict[str, Any], limit: int = 20) -> None:
    from rich.table import Table

    rows = result["rows"]
    table = Table(title=f"{result['inputs']}: {result['n']} inputs", title_justify="left")
    extra = [k for k in ("entropy", "variance") if rows and k in rows[0]]  # --mc-dropout
    for col in ("input", "class", "name", "p", *extra):
        table.add_column(col, justify="left" if col in ("input", "name") else "right")
    for row in rows[:limit]:
        p = f"{row['probabilities'][row['name']]:.3f}"
        table.add_row(
            row["input"], str(row["class"]), row["name"], p, *(f"{row[k]:.4g}" for k in extra)
        )
    console = make_console()
    console.print(table)
    if len(rows) > limit:
        console.print(f"... {len(rows) - limit} more rows (-o FILE.csv writes them all)")
    if "accuracy" in result:
        console.print(f"accuracy {result['accuracy']:.4f}")
    if "output" in result:
        console.print(f"predictions -> {result['output']}", highlight=False)


@app.command()
@user_errors
def export(
    run_dir: str = typer.Argument(..., help="a run folder written by trainlab train"),
    fmt: str = typer.Option("torchscript", "--format", help="torchscript | onnx"),
    out: str = typer.Option(None, "--out", "-o", help="file (default RUN/model.pt or .onnx)"),
    weights: str = typer.Option("final", help="final | best | last"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """The run as one file: raw inputs in, class probabilities out, preprocessing inside."""
    from trainlab.api import export as run_export

    result = run_export(run_dir, fmt, out=out, weights=weights)
    if not as_json:
        print(
            f"{result['format']}: {result['path']} (input {tuple(result['input_shape'])} float32,"
            f" output {result['output']})"
        )
    _emit(result, as_json)


#: ``trainlab doctor``'s exit code when a check fails (with ``--strict``, also when one warns);
#: as linters do: 0 clean, 1 findings, 2 bad input
DOCTOR_FINDINGS_EXIT = 1


@app.command()
@user_errors
def doctor(
    args: list[str] = typer.Argument(
        None,
        metavar="[RECIPE] [KEY=VALUE]...",
        help="recipe YAML (default: recipes/digits.yaml; with --run: the run's own), overrides",
    ),
    out: str = typer.Option(None, "--out", "-o", help="report folder (default: doctor-NAME)"),
    run: str = typer.Option(
        None, "--run", help="a run folder: diagnose its recipe.yaml and read its curves"
    ),
    checks: str = typer.Option(
        None, "--checks", help="comma-separated subset: data,initial_loss,layers,overfit,..."
    ),
    strict: bool = typer.Option(False, "--strict", help="exit 1 on warnings too"),
    fix: bool = typer.Option(
        False, "--fix", help="try the top fixes (re-run the failed checks) and report"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """Check a recipe the way lecture 002 debugs a network; one line per finding + a report.

    Exit code 0 when no check fails, 1 when one fails (with --strict: or warns), 2 on bad input.
    """
    from trainlab.api import doctor as run_doctor

    recipe, overrides = split_recipe_args(args or [])
    chosen = tuple(c.strip() for c in checks.split(",")) if checks else None

    def show(finding) -> None:
        if not as_json:
            print(finding.line(), flush=True)

    def started(name: str) -> None:
        if not as_json and sys.stderr.isatty():
            print(f"doctor: {name} ...", file=sys.stderr, flush=True)

    result = run_doctor(
        recipe, overrides, out=out, run=run, checks=chosen, on_finding=show, fix=fix,
        on_check=started,
    )  # fmt: skip
    if not as_json:
        _print_fixes(result, recipe, overrides, run)
        print(f"{result['status']}: report -> {result['report']}")
    _emit(result, as_json)
    if result["status"] == "fail" or (strict and result["status"] == "warn"):
        raise typer.Exit(DOCTOR_FINDINGS_EXIT)


def _print_fixes(
    result: dict[str, Any], recipe: str | None, overrides: list[str], run: str | None
) -> None:
    """``--fix``: a line per fix tried, then the command to keep (the recipe and overrides
    diagnosed, less those a kept fix replaces, then the kept fixes)."""
    from trainlab.diagnosis.fixes import FixTrial

    for trial in result["fixes"]:
        t = FixTrial(tuple(trial["fix"]), trial["target"], trial["before"], trial["after"],
                     trial["kept"])  # fmt: skip
        print(t.line())
    if result["fixes"] and result["keep"]:
        where = recipe or (f"{run}/recipe.yaml" if run else "")
        fixed = {k.split("=", 1)[0] for k in result["keep"]}
        given = (
            [] if run else [shlex.quote(o) for o in overrides if o.split("=", 1)[0] not in fixed]
        )
        kept = [shlex.quote(k) for k in result["keep"]]
        print("keep: trainlab train " + " ".join([where, *given, *kept]).strip())
    elif result["fixes"]:
        print("keep: no fix tried made its check better; see the advice above")


@app.command()
@user_errors
def augment(
    args: list[str] = typer.Argument(
        None,
        metavar="[RECIPE] [KEY=VALUE]...",
        help="recipe YAML (default: recipes/digits.yaml), overrides",
    ),
    out: str = typer.Option(None, "--out", "-o", help="PNG to write (default: NAME-augment.png)"),
    n: int = typer.Option(16, "--n", "-n", help="training samples to show (1 to 64)"),
    seed: int = typer.Option(None, "--seed", help="picks samples and draws (default: recipe's)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """A PNG grid of training samples beside augmented draws of the recipe's augmentation."""
    from trainlab.api import augment_preview

    recipe, overrides = split_recipe_args(args or [])
    result = augment_preview(recipe, overrides, out=out, n=n, seed=seed)
    if not as_json:
        what = f"{result['samples']} samples" + (
            f" x {result['draws']} augmented draws" if result["draws"] else " (originals only)"
        )
        make_console().print(
            f"{what} of recipe {result['recipe']!r} ({result['width']}x{result['height']} px) "
            f"-> {result['path']}",
            highlight=False,
        )
    _emit(result, as_json)


@app.command(name="list")
@user_errors
def list_components(
    kind: str = typer.Argument(None, help="one family (e.g. activation); all when omitted"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON (last line)"),
) -> None:
    """The registered names of every component family (what a recipe may name), and the
    techniques a recipe turns on with a key (``technique``)."""
    from trainlab.listing import listing  # the shipped catalogue: no torch import

    result, descriptions = listing(kind)
    rows: dict[str, list[tuple[str, str, str]]] = {}
    for k, entries in result.items():
        rows[k] = [
            (
                name,
                " ".join(e["set"])
                if k == "technique"
                else ", ".join(f"{p}={v!r}" for p, v in e["params"].items()),
                e["summary"],
            )
            for name, e in entries.items()
        ]
    if not as_json:
        _print_tables(rows, descriptions)
    _emit(result, as_json)


_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`]+)`")  # :class:`~a.b.C`, :py:func:`f`
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def plain(text: str) -> str:
    """A docstring's reST as terminal text: ``code`` and `x` lose their backticks, a role like
    :class:`~trainlab.engine.best.Best` becomes its target (the last part after a ``~``).

    The summaries ``trainlab list`` shows are docstrings' first lines, written for Sphinx; on
    a terminal the markup is noise that also costs width.
    """

    def role(match: re.Match[str]) -> str:
        short, target = match.groups()
        return target.rsplit(".", 1)[-1] if short else target

    text = _ROLE.sub(role, text)
    return _LITERAL.sub(lambda m: m.group(1) or m.group(2), text)


def _print_tables(
    rows: dict[str, list[tuple[str, str, str]]], descriptions: dict[str, str]
) -> None:
    """One table per family; cells fold onto further lines, never end in an ellipsis (a cut
    parameter default or description cannot be read anywhere else on the screen)."""
    from rich.markup import escape
    from rich.table import Table

    out = make_console()
    for kind, entries in rows.items():
        technique = kind == "technique"
        what = plain(descriptions[kind])
        table = Table(title=escape(f"{kind}: {what}"), title_justify="left")
        table.add_column("name", no_wrap=True)
        for col in ("recipe line" if technique else "parameters", "what it is"):
            table.add_column(col, overflow="fold")
        for name, params, summary in entries:
            table.add_row(name, escape(params), escape(plain(summary)))  # [a, b] is text
        out.print(table)


lab_app = typer.Typer(no_args_is_help=True, help="Lecture experiments, runnable (e.g. init-stats).")
app.add_typer(lab_app, name="lab")


@lab_app.command("init-stats")
@user_errors
def lab_init_stats(
    init: str = typer.Option(
        "normal:0.01", "--init", help="registered init, NAME[:PARAM] (normal:0.01, xavier, kaiming)"
    ),
    act: str = typer.Option("tanh", "--act", help="registered activation, NAME[:PARAM]"),
    depth: int = typer.Option(6, "--depth", help="number of Linear(width, width) layers"),
    width: int = typer.Option(4096, "--width", help="units per layer"),
    batch: int = typer.Option(16, "--batch", help="rows of the input x ~ N(0, 1)"),
    seed: int = typer.Option(0, "--seed", help="seeds the input and the weights"),
    out: str = typer.Option("init-stats.png", "--out", "-o", help="histogram PNG to write"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """Lecture 000's experiment: activation mean/std per layer of a deep linear stack at init."""
    from trainlab.diagnosis.lab import init_stats, plot_init_stats

    rows = init_stats(init, act, depth, width, batch, seed, keep_values=True)
    title = f"init {init}, activation {act}: {depth} x Linear({width}, {width}), batch {batch}"
    figure = plot_init_stats(rows, out, title)
    layers = [{k: r[k] for k in ("layer", "mean", "std")} for r in rows]
    if not as_json:
        from rich.table import Table

        table = Table()
        for col in ("layer", "mean", "std"):
            table.add_column(col, justify="right")
        for r in layers:
            table.add_row(str(r["layer"]), f"{r['mean']:+.3g}", f"{r['std']:.3g}")
        console = make_console()
        console.print(title, highlight=False)
        console.print(table)
        console.print(f"histograms: {figure}", highlight=False)
    _emit({"layers": layers, "init": init, "activation": act, "figure": str(figure)}, as_json)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """trainlab's own warnings as one line on stderr; others as Python prints them."""
    if issubclass(category, TrainlabWarning):
        print(f"trainlab: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


app.command()(cli_search.search)
app.command()(cli_search.compare)
app.command()(cli_ensemble.ensemble)


def main() -> None:
    warnings.showwarning = _show_warning
    app()


if __name__ == "__main__":
    main()
