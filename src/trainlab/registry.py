"""Named component families (activations, inits, losses, ...), each listable and typo-tolerant.

Every component a recipe can name lives in one :class:`Registry`. The registry is the single
source of truth for the valid names: the recipe validator, ``trainlab list`` and the parametrised
tests all read it, so adding a component in one place makes it available everywhere.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from trainlab.errors import RecipeError

__all__ = ["Entry", "Registry", "REGISTRIES", "closest"]


def closest(name: str, choices: list[str]) -> str | None:
    """The most similar valid name, for "did you mean" hints (None when nothing is close)."""
    hits = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return hits[0] if hits else None


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, the factory that builds it and a one-line summary."""

    name: str
    factory: Callable[..., Any]
    summary: str
    info: dict[str, Any] = field(default_factory=dict)

    def param_types(self) -> dict[str, Any]:
        """The annotations of the recipe-settable parameters (with their constraints)."""
        try:
            hints = typing.get_type_hints(self.factory, include_extras=True)
        except (NameError, TypeError):  # a lambda or an unresolvable annotation: unchecked
            return {}
        return {name: hints[name] for name in self.params() if name in hints}

    def params(self) -> dict[str, Any]:
        """Parameters a recipe may set: the factory's keyword-only arguments with a default.

        Keyword-only arguments without a default (``channels``, ``dims``) are context that the
        builder supplies, never the recipe.
        """
        sig = inspect.signature(self.factory)
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        }


class Registry:
    """A family of components addressed by stable short names."""

    def __init__(self, kind: str, description: str) -> None:
        self.kind = kind
        self.description = description
        self._entries: dict[str, Entry] = {}
        REGISTRIES[kind] = self

    def register(self, name: str, summary: str = "", **info: Any) -> Callable:
        """Decorator: register ``factory`` under ``name`` (summary: its docstring's first line)."""

        def deco(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            doc = summary or (inspect.getdoc(factory) or "").split("\n")[0]
            self._entries[name] = Entry(name, factory, doc, dict(info))
            return factory

        return deco

    def add(self, name: str, factory: Callable, summary: str, **info: Any) -> None:
        """Register an existing callable (a torch class, say) without decorating it."""
        self.register(name, summary, **info)(factory)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name is a RecipeError listing the valid choices."""
        try:
            return self._entries[name]
        except KeyError:
            raise RecipeError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = closest(name, self.names())
        did = f" did you mean {hint!r}?" if hint else ""
        return f"unknown {self.kind} {name!r};{did} valid: {', '.join(self.names())}"

    def build(self, name: str, context: dict[str, Any] | None = None, **params: Any) -> Any:
        """Call the factory of ``name`` with ``params``, refusing parameters it does not take.

        ``context`` holds the arguments the caller supplies (channels, dims), not the user.
        """
        entry = self.get(name)
        for key in params:
            if key not in entry.params():
                raise RecipeError(self.unknown_param_message(name, key))
        return entry.factory(**params, **(context or {}))

    def unknown_param_message(self, name: str, key: str, also: tuple[str, ...] = ()) -> str:
        """``key`` is not a parameter of ``name``: say so, with the closest valid one.

        ``also`` lists keys the caller accepts beside the factory's (a section's own fields).
        """
        valid = [*self.get(name).params(), *also]
        hint = closest(key, valid)
        did = f" did you mean {hint!r}?" if hint else ""
        listed = ", ".join(valid) or "none"
        return f"{self.kind} {name!r} has no parameter {key!r};{did} valid: {listed}"

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())


REGISTRIES: dict[str, Registry] = {}
