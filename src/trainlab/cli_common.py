"""What every ``trainlab`` command shares: the console, ``--json`` output, one-line errors.

Its own module so that the commands in cli.py and cli_search.py use one copy without importing
each other.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import typer

from trainlab.errors import TrainlabError

__all__ = ["make_console", "emit", "user_errors", "split_recipe_args", "UNWRAPPED"]


UNWRAPPED = 1 << 15  # rich's width when not on a terminal: wide enough that nothing wraps


def make_console(stderr: bool = False) -> Any:
    """rich's console for the CLI: a terminal's own width, else no wrapping at all.

    rich gives a pipe or a file 80 columns and wraps at them, so ``trainlab train | tail -1``
    got the end of a broken summary line; a script reading our output wants whole lines.
    """
    from rich.console import Console

    terminal = Console(stderr=stderr)
    if terminal.is_terminal:
        return terminal
    return Console(stderr=stderr, width=UNWRAPPED, soft_wrap=True)


def emit(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))


def user_errors(fn: Callable) -> Callable:
    """Turn a TrainlabError into one line per problem on stderr and its exit code (no traceback).

    With ``--json`` the last stdout line is ``{"error": whole message, "problems": [...]}``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TrainlabError as exc:
            for line in exc.lines():
                print(f"trainlab: {exc.prefix}: {line}", file=sys.stderr)
            if kwargs.get("as_json"):
                problems = getattr(exc, "problems", None) or [str(exc)]
                print(json.dumps({"error": str(exc), "problems": problems}))
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def split_recipe_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``[RECIPE] [a.b=c ...]``: the first argument is the recipe unless it is an override."""
    if args and "=" not in args[0]:
        recipe, overrides = args[0], args[1:]
    else:
        recipe, overrides = None, list(args)
    for item in overrides:
        if "=" not in item:
            raise TrainlabError(
                f"argument {item!r}: expected an override KEY=VALUE after the recipe"
            )
    return recipe, overrides
