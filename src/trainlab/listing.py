"""``trainlab list`` without importing torch: the catalogue of every registered component, as
shipped in ``catalog.json`` beside this file.

The registries are filled by importing the modules that define the components, and those
import torch (about 2 s on a small machine), so listing them live made ``trainlab list`` take
3.5 s. The file is generated from the live registries (``python -m trainlab.listing``) and a
test fails when it differs from them, so it cannot drift. ``trainlab.list_components()`` from
Python stays live (it sees components a user registered in the same process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from trainlab.errors import RecipeError

__all__ = ["CATALOG_FILE", "live_catalog", "shipped_catalog", "listing", "write_catalog"]

CATALOG_FILE = Path(__file__).with_name("catalog.json")
TECHNIQUE_DESCRIPTION = "set by a recipe key"


def live_catalog() -> dict[str, Any]:
    """``{"descriptions": {kind: text}, "components": list_components()}`` from the registries,
    as JSON writes it (tuples become lists)."""
    from trainlab.api import list_components
    from trainlab.registry import REGISTRIES

    components = list_components()
    descriptions = {k: REGISTRIES[k].description for k in components if k in REGISTRIES}
    descriptions["technique"] = TECHNIQUE_DESCRIPTION
    return json.loads(json.dumps({"descriptions": descriptions, "components": components}))


def shipped_catalog() -> dict[str, Any]:
    """The catalogue as shipped (no torch import)."""
    return json.loads(CATALOG_FILE.read_text(encoding="utf-8"))


def listing(kind: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """``(components, descriptions)`` of every family, or of ``kind`` alone (an unknown kind is
    a one-line RecipeError naming the closest)."""
    from trainlab.registry import closest

    catalog = shipped_catalog()
    components, descriptions = catalog["components"], catalog["descriptions"]
    if kind is None:
        return components, descriptions
    if kind not in components:
        hint = closest(kind, list(components))
        did = f" did you mean {hint!r}?" if hint else ""
        raise RecipeError(f"unknown kind {kind!r};{did} valid: {', '.join(components)}")
    return {kind: components[kind]}, {kind: descriptions[kind]}


def write_catalog() -> Path:
    """Regenerate ``catalog.json`` from the live registries."""
    from trainlab.files import atomic_write

    text = json.dumps(live_catalog(), indent=1, ensure_ascii=False) + "\n"
    atomic_write(CATALOG_FILE, text.encode("utf-8"))
    return CATALOG_FILE


if __name__ == "__main__":
    print(write_catalog(), file=sys.stderr)
