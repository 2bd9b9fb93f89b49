"""Imports point one way: a walk of src/ fails on any import cycle between trainlab's modules.

Every import counts, those inside functions too (a lazy import still ties the two modules
together); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The trainlab modules ``path`` imports (a package import counts as its __init__)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_walk_sees_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]


def test_the_engine_never_imports_the_doctor():
    graph = import_graph()
    engine = [m for m in graph if m.startswith("trainlab.engine")]
    for module in engine:
        assert not any(d.startswith("trainlab.diagnosis") for d in graph[module]), module


# DESIGN.md's layers, bottom first: a module may import its own layer and those below it
LAYERS = [
    (
        "trainlab.version",
        "trainlab.errors",
        "trainlab.types",
        "trainlab.files",
        "trainlab.registry",
    ),
    ("trainlab.recipe", "trainlab.catalog", "trainlab.techniques"),
    ("trainlab.nn", "trainlab.data", "trainlab.optim", "trainlab.figures"),
    ("trainlab.engine",),
    ("trainlab.diagnosis", "trainlab.evaluation"),
    ("trainlab.runs", "trainlab.seeds", "trainlab.tuning"),
    (
        "trainlab.api",
        "trainlab.cli",
        "trainlab.cli_common",
        "trainlab.cli_search",
        "trainlab.cli_ensemble",
        "trainlab",
    ),  # fmt: skip
]


def _layer(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "trainlab"):
            return level
    return len(LAYERS) - 1  # the package itself


def test_imports_point_down_the_layers():
    """recipe and registry at the bottom; nn/, data/, optim/ on them; the engine above; the
    doctor and evaluation above the engine; api and CLI at the top. The catalog's imports of
    the component modules are the one way up (it exists to register them), so it is left out."""
    graph = import_graph()
    upward = [
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m != "trainlab.catalog"
        for d in deps
        if d != "trainlab.catalog" and _layer(d) > _layer(m)
    ]
    assert upward == []
