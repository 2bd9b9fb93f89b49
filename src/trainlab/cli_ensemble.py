"""``trainlab ensemble``: a command that cli.py registers on its app (one file per concept,
the same rules as every command: one line per user error, exit 2; ``--json`` last)."""

from __future__ import annotations

from typing import Any

import typer

from trainlab.cli_common import emit as _emit
from trainlab.cli_common import make_console, user_errors

__all__ = ["ensemble"]


@user_errors
def ensemble(
    runs: list[str] = typer.Argument(..., metavar="RUN_DIR...", help="run folders (members)"),
    logits: bool = typer.Option(False, "--logits", help="average raw scores, not probabilities"),
    snapshots: bool = typer.Option(
        False, "--snapshots", help="one run: its SGDR-cycle snapshots are the members"
    ),
    tta: str = typer.Option(None, "--tta", help="average each member over a TTA policy first"),
    weights: str = typer.Option("final", help="final | best | last"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (last line)"),
) -> None:
    """Average the members' test predictions: each member's and the ensemble's accuracy,
    NLL, ECE and Brier score."""
    from trainlab.evaluation.ensemble import ensemble as run_ensemble

    average = "logits" if logits else "probabilities"
    result = run_ensemble(runs, average=average, snapshots=snapshots, weights=weights, tta=tta)
    if not as_json:
        _print_ensemble(result)
    _emit(result, as_json)


def _print_ensemble(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"ensemble of {result['n']} ({result['average']} averaged"
        + (f", tta {result['tta']}" if result["tta"] else "")
        + f", {result['test_examples']} test examples)",
        title_justify="left",
    )
    for col in ("member", "acc", "nll", "ece", "brier"):
        table.add_column(col, justify="left" if col == "member" else "right")

    def add(name: str, row: dict[str, float], style: str = "") -> None:
        cells = (f"{row[f'test_{k}']:.4f}" for k in ("acc", "nll", "ece", "brier"))
        table.add_row(name, *cells, style=style)

    for row in result["members"]:
        add(row["member"], row)
    add("ensemble", result["ensemble"], "bold")
    console = make_console()
    console.print(table)
    console.print(
        f"gain {100 * result['gain_over_mean_member']:+.2f} points over the mean member, "
        f"{100 * result['gain_over_best_member']:+.2f} over the best",
        highlight=False,
    )
