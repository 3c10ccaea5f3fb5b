"""The layers' import rule, checked by following every import of every module of the three packages.

The rule (docs/architecture.md, "Layers"): ``budgetq.domain`` imports nothing of budgetq but
``errors``; ``adapters`` import domain, errors and settings; ``services`` import domain and adapters;
``cli``, ``worker`` and ``scheduler`` import services and adapters and never each other; ``devtools``
(the stand-in, embedded servers, the demo scenario) is never imported by production code, and the CLI
reaches it only inside a function, so a deployment without it still runs; no import cycle anywhere.
The pure core also reads neither the clock nor the environment and imports no I/O framework.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("budgetq", "worker", "scheduler")

# Layer of a module: the first of these prefixes its dotted name starts with.
LAYERS = (
    ("budgetq.domain", "domain"),
    ("budgetq.services", "services"),
    ("budgetq.adapters", "adapters"),
    ("budgetq.devtools", "devtools"),
    ("budgetq.cli", "cli"),
    ("budgetq.errors", "errors"),
    ("budgetq.settings", "settings"),
    ("budgetq.seed", "facade"),
    ("worker", "worker"),
    ("scheduler", "scheduler"),
    ("budgetq", "facade"),  # budgetq/__init__.py: the seed's public names, loaded lazily
)
# Which layers a layer may import (itself included where listed).
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset({"errors"}),
    "settings": frozenset({"errors", "settings"}),
    "domain": frozenset({"errors", "domain"}),
    "adapters": frozenset({"errors", "settings", "domain", "adapters"}),
    "services": frozenset({"errors", "settings", "domain", "adapters", "services"}),
    "devtools": frozenset({"errors", "settings", "domain", "adapters", "devtools"}),
    "cli": frozenset({"errors", "settings", "domain", "adapters", "services", "cli", "facade"}),
    "worker": frozenset({"errors", "settings", "domain", "adapters", "services", "worker"}),
    "scheduler": frozenset({"errors", "settings", "domain", "adapters", "services", "scheduler"}),
    "facade": frozenset({"errors", "settings", "domain", "adapters", "facade"}),
}
# The CLI may start the stand-in and embedded servers, but only from inside a function.
LAZY_ONLY = {("cli", "devtools")}

FORBIDDEN_IN_DOMAIN = frozenset(
    {"sqlalchemy", "celery", "kombu", "redis", "anthropic", "httpx", "httpx2", "psycopg", "requests"}
    | {"socket", "time", "os", "subprocess", "threading", "logging", "pydantic_settings"}
)
CLOCK_OR_ENVIRONMENT = frozenset({"now", "utcnow", "today", "environ", "getenv"})


@dataclass(frozen=True)
class Import:
    """One import of a budgetq, worker or scheduler module, and whether it runs at import time."""

    target: str
    line: int
    top_level: bool


def module_name(path: Path) -> str:
    """The dotted name of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to."""
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} belongs to no layer")


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(source: str, module: str, known: set[str]) -> Iterator[Import]:
    """The project imports in ``source``, resolved to module names (``from a import b`` yields ``a.b``
    when that is a module); imports under ``if TYPE_CHECKING`` are skipped, they never run."""
    tree = ast.parse(source)
    package = module if module in known and _is_package(module, known) else module.rpartition(".")[0]

    def walk(node: ast.AST, top_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            nested = top_level and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, child.lineno, top_level)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    yield Import(full if full in known else base, child.lineno, top_level)
            yield from walk(child, nested)

    for found in walk(tree, True):
        if found.target.split(".")[0] in PACKAGES:
            yield found


def _is_package(module: str, known: set[str]) -> bool:
    return any(other.startswith(module + ".") for other in known)


def violations(graph: dict[str, list[Import]]) -> list[str]:
    """Every import that breaks the layer rule, as 'module:line imports target (a → b)'."""
    broken = []
    for module, found in graph.items():
        source = layer_of(module)
        for imp in found:
            target = layer_of(imp.target)
            if target not in ALLOWED[source] and not ((source, target) in LAZY_ONLY and not imp.top_level):
                broken.append(f"{module}:{imp.line} imports {imp.target} ({source} → {target})")
    return broken


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Cycles among import-time (module-level) imports, each as the list of modules around it."""
    edges = {
        m: sorted({i.target for i in found if i.top_level and i.target in graph})
        for m, found in graph.items()
    }
    found_cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges[node]:
            # A package's __init__ importing its own submodule is how packages load, not a cycle.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                found_cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found_cycles


def build_graph(sources: dict[str, str]) -> dict[str, list[Import]]:
    """Module name → its project imports, for modules given as source text."""
    known = set(sources)
    return {name: list(imports_of(text, name, known)) for name, text in sources.items()}


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return build_graph({name: path.read_text(encoding="utf-8") for name, path in modules().items()})


def test_every_module_of_the_three_packages_is_covered(graph: dict[str, list[Import]]) -> None:
    # Given every module under budgetq/, worker/ and scheduler/
    # Then each one belongs to a layer, and the layers the docs name all exist
    assert {layer_of(name) for name in graph} == set(ALLOWED)
    assert len(graph) > 80


def test_no_module_breaks_the_layer_rule(graph: dict[str, list[Import]]) -> None:
    assert violations(graph) == []


def test_no_import_cycle(graph: dict[str, list[Import]]) -> None:
    assert cycles(graph) == []


def test_no_production_module_imports_the_standin_or_the_embedded_servers(
    graph: dict[str, list[Import]],
) -> None:
    # Given the production layers (everything a deployment runs)
    production = {"domain", "services", "adapters", "worker", "scheduler", "facade", "errors", "settings"}

    # Then none of their modules imports devtools, at import time or inside a function
    offenders = [
        f"{module}:{imp.line} imports {imp.target}"
        for module, found in graph.items()
        if layer_of(module) in production
        for imp in found
        if layer_of(imp.target) == "devtools"
    ]
    assert offenders == []


def test_orm_rows_never_leave_the_store(graph: dict[str, list[Import]]) -> None:
    # Given the ORM model modules: only the store adapter itself may import them
    leaks = [
        f"{module}:{imp.line}"
        for module, found in graph.items()
        if not module.startswith("budgetq.adapters.store")
        for imp in found
        if imp.target.startswith("budgetq.adapters.store.") and imp.target.endswith("models")
    ]
    assert leaks == []


def test_the_cli_reaches_devtools_only_inside_functions(graph: dict[str, list[Import]]) -> None:
    top = [
        f"{module}:{imp.line}"
        for module, found in graph.items()
        if layer_of(module) == "cli"
        for imp in found
        if imp.top_level and layer_of(imp.target) == "devtools"
    ]
    assert top == []


DOMAIN = sorted(path for name, path in modules().items() if layer_of(name) == "domain")


@pytest.mark.parametrize("path", DOMAIN, ids=[p.stem for p in DOMAIN])
def test_a_domain_module_imports_no_framework_network_clock_or_process(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert roots & FORBIDDEN_IN_DOMAIN == set()


@pytest.mark.parametrize("path", DOMAIN, ids=[p.stem for p in DOMAIN])
def test_a_domain_module_reads_neither_the_clock_nor_the_environment(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert used & CLOCK_OR_ENVIRONMENT == set()


# The checker itself: each rule catches what it is there to catch.


def test_the_rule_catches_a_domain_module_importing_an_adapter() -> None:
    graph = build_graph(
        {
            "budgetq.domain.packing": "from budgetq.adapters.store import runs\n",
            "budgetq.adapters.store.runs": "",
            "budgetq.adapters.store": "",
        }
    )
    assert violations(graph) == [
        "budgetq.domain.packing:1 imports budgetq.adapters.store.runs (domain → adapters)"
    ]


def test_the_rule_catches_the_worker_importing_the_scheduler_and_the_cli_importing_a_process_shell() -> None:
    graph = build_graph(
        {
            "worker.process": "import scheduler.planning\n",
            "scheduler.planning": "",
            "budgetq.cli.runs": "def f():\n    from worker import tasks\n",
            "worker.tasks": "",
        }
    )
    assert violations(graph) == [
        "worker.process:1 imports scheduler.planning (worker → scheduler)",
        "budgetq.cli.runs:2 imports worker.tasks (cli → worker)",
    ]


def test_the_rule_lets_the_cli_start_the_standin_only_from_a_function() -> None:
    lazy = build_graph(
        {
            "budgetq.cli.demo": "def f():\n    from budgetq.devtools import embedded\n",
            "budgetq.devtools.embedded": "",
        }
    )
    eager = build_graph(
        {"budgetq.cli.demo": "from budgetq.devtools import embedded\n", "budgetq.devtools.embedded": ""}
    )
    assert violations(lazy) == []
    assert violations(eager) == ["budgetq.cli.demo:1 imports budgetq.devtools.embedded (cli → devtools)"]


def test_the_cycle_finder_finds_a_cycle_and_skips_type_checking_imports() -> None:
    graph = build_graph(
        {
            "budgetq.domain.a": "from budgetq.domain import b\n",
            "budgetq.domain.b": "import budgetq.domain.a\n",
            "budgetq.domain.c": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import budgetq.domain.a\n"
            ),
            "budgetq.domain": "",
        }
    )
    assert cycles(graph) == [["budgetq.domain.a", "budgetq.domain.b", "budgetq.domain.a"]]
    assert graph["budgetq.domain.c"] == []
