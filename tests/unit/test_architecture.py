"""The house rules, checked from the source with ``ast`` and text (nothing is imported or run):
no import cycle between the project's modules, no forbidden edge between its packages, one
writer module per store, no oversized module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name not in {"tests", "bench"})
RUNTIMES = {"api", "spark_jobs", "dags", "cli"}
# package -> the top-level names it must never import (project packages or third-party).
FORBIDDEN = {
    "core": set(PACKAGES) - {"core"},
    "records": set(PACKAGES) - {"core", "records"},
    "db": set(PACKAGES) - {"core", "db"},  # the reshard mover: shards only, no domain code
    "lake": RUNTIMES,
    "processing": RUNTIMES | {"lake", "records"},
    "streaming": RUNTIMES,
    "warehouse": RUNTIMES,
    "orchestration": RUNTIMES,
    "study": RUNTIMES,
    "api": {"spark_jobs", "dags", "pyspark", "cli"},
    "spark_jobs": {"api", "dags", "cli"},
    "dags": {"api", "cli"},
}
MAX_MODULE_LINES = 500


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> project modules it imports, module -> every imported dotted name)."""
    modules = _modules()
    imported = {name: _imports(path) for name, path in modules.items()}
    edges = {name: {n for n in names if n in modules and n != name} for name, names in imported.items()}
    return edges, imported


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def forbidden_edges(imported: dict[str, set[str]]) -> list[str]:
    found = []
    for module, names in imported.items():
        banned = FORBIDDEN.get(module.split(".")[0], set())
        for name in sorted(names):
            if name.split(".")[0] in banned:
                found.append(f"{module} -> {name}")
    return found


def test_no_import_cycle_between_modules():
    edges, _ = import_graph()
    assert find_cycles(edges) == []


def test_no_forbidden_import_between_packages():
    _, imported = import_graph()
    assert forbidden_edges(imported) == []


def test_the_checks_find_what_they_look_for():
    # The checker itself can fail: a made-up cycle and a made-up forbidden edge are reported.
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert forbidden_edges({"core.x": {"api.services"}, "api.y": {"pyspark.sql"}, "api.z": {"core"}}) == [
        "core.x -> api.services",
        "api.y -> pyspark.sql",
    ]


_WRITES = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(documents|jobs)\b", re.IGNORECASE)


def test_documents_and_jobs_rows_have_exactly_one_writer_module():
    writers = {str(path.relative_to(ROOT)) for path in _modules().values() if _WRITES.search(path.read_text())}
    assert writers == {"records/documents.py"}


def test_no_module_is_over_the_size_limit():
    oversized = {
        str(path.relative_to(ROOT)): n
        for path in [*_modules().values(), *(ROOT / "bench").glob("*.py")]
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert oversized == {}
