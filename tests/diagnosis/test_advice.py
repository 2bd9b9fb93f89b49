"""Every command and recipe key the doctor's texts name exists, and every check is named the
same in the output, the JSON, ``--checks`` and ``trainlab list check`` (issue 18, item 3/6).

The texts are read from the source: every string literal in ``trainlab.diagnosis`` (advice is
assembled from literals, so a literal names every command and key any advice can name, tested
path or not)."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

import trainlab.diagnosis
from trainlab.recipe import Named, Recipe

SOURCES = sorted(Path(trainlab.diagnosis.__file__).parent.rglob("*.py"))
SECTIONS = "|".join(f for f in Recipe.model_fields if f not in ("name", "seed"))
KEY = re.compile(rf"(?<![\w./-])(?:{SECTIONS})(?:\.[a-z_]+)+(?=[=\s),;:'\"]|$)")
COMMAND = re.compile(r"\btrainlab ([a-z][a-z-]*)")


def _literals() -> list[tuple[str, str]]:
    """(file:line, text) of every string literal (f-strings' literal parts included) that is
    a text: a bare dotted name (a cause ``data.labels``, a finding ``data.split``, a file
    ``data.png``) is an identifier, not advice."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", node.value):
                    continue
                found.append((f"{path.name}:{node.lineno}", node.value))
    return found


def _inner(annotation: typing.Any) -> typing.Any:
    """The model class inside Optional[...] / list[...] / Annotated[...], if any."""
    for arg in typing.get_args(annotation) or ():
        inner = _inner(arg)
        if inner is not None:
            return inner
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _key_exists(path: str) -> bool:
    """Whether ``a.b.c`` is a recipe key: a field of the schema, or a parameter of some
    registered component of a named section (``loss.label_smoothing``)."""
    from trainlab.recipe import _registry

    cls: typing.Any = Recipe
    for part in path.split("."):
        if cls is None:
            return False
        if part in cls.model_fields:
            cls = _inner(cls.model_fields[part].annotation)
            continue
        if issubclass(cls, Named) and cls.kind:
            registry = _registry(cls.kind)
            return any(part in registry.get(n).params() for n in registry.names())
        return False
    return True


def test_the_key_reader_knows_real_keys_from_made_up_ones():
    assert _key_exists("optimizer.lr") and _key_exists("loss.label_smoothing")
    assert _key_exists("training.early_stopping.patience") and _key_exists("model.init")
    assert not _key_exists("model.initt") and not _key_exists("training.lr")


def test_every_recipe_key_named_in_the_doctors_texts_exists():
    import trainlab.catalog  # noqa: F401  (registers every component)

    missing = sorted(
        {f"{where}: {key}" for where, text in _literals() for key in KEY.findall(text)
         if not _key_exists(key)}
    )  # fmt: skip
    assert missing == []


def test_every_command_named_in_the_doctors_texts_exists():
    import typer.main

    from trainlab.cli import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    named = {(where, cmd) for where, text in _literals() for cmd in COMMAND.findall(text)}
    assert named, "the scan found no command at all: the pattern is broken"
    assert sorted(f"{w}: trainlab {c}" for w, c in named if c not in commands) == []


def test_check_names_agree_everywhere():
    from trainlab.api import list_components
    from trainlab.diagnosis.doctor import CHECK_REGISTRY, CHECKS

    assert set(list_components("check")["check"]) == set(CHECKS) == set(CHECK_REGISTRY.names())
    assert all(re.fullmatch(r"[a-z_]+", name) for name in CHECKS)  # no spaces, as --checks


@pytest.mark.parametrize("wrong", ["xavier_normal (std = 1/sqrt(fan_in)", "lr-find"])
def test_the_known_wrong_texts_are_gone(wrong: str):
    assert not [w for w, text in _literals() if wrong in text]
