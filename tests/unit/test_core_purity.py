"""The pure core imports no I/O framework and reads neither the clock nor the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = (
    "budget",
    "tokens",
    "catalog",
    "pricing",
    "packing",
    "answers",
    "spend",
    "limits",
    "reaping",
    "message_batches",
    "ingest",
    "deferral",
    "forecast",
    "selector",
)
PACKAGE = Path(__file__).resolve().parents[2] / "budgetq"
FORBIDDEN_MODULES = frozenset(
    {
        "sqlalchemy",
        "celery",
        "kombu",
        "redis",
        "anthropic",
        "httpx",
        "psycopg",
        "requests",
        "socket",
        # datetime.now() cannot be caught by imports alone; time.time() can.
        "time",
    }
)
# Attribute names that read the clock or the environment (datetime.now, date.today, os.environ, ...).
FORBIDDEN_ATTRIBUTES = frozenset({"now", "utcnow", "today", "environ", "getenv"})

CORE_FILES = [PACKAGE / f"{name}.py" for name in CORE if (PACKAGE / f"{name}.py").exists()]


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_core_modules_that_must_exist_do() -> None:
    names = {path.stem for path in CORE_FILES}
    assert {"budget", "tokens", "catalog", "pricing"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=[p.stem for p in CORE_FILES])
def test_a_core_module_imports_no_framework_network_or_clock(path: Path) -> None:
    # Given a core module's syntax tree
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    # Then none of its imports is a forbidden module
    assert _imported_roots(tree) & FORBIDDEN_MODULES == set()


@pytest.mark.parametrize("path", CORE_FILES, ids=[p.stem for p in CORE_FILES])
def test_a_core_module_reads_neither_the_clock_nor_the_environment(path: Path) -> None:
    # Given a core module's syntax tree
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    # Then it touches no attribute such as datetime.now, date.today or os.environ
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert used & FORBIDDEN_ATTRIBUTES == set()


def test_the_checker_catches_a_forbidden_import_and_a_clock_read() -> None:
    # Given a module that imports sqlalchemy and time, and calls datetime.now()
    source = "import time\nfrom sqlalchemy.orm import Session\nimport datetime\ndatetime.datetime.now()\n"
    tree = ast.parse(source)

    # Then both rules see it
    assert _imported_roots(tree) & FORBIDDEN_MODULES == {"time", "sqlalchemy"}
    assert {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} & FORBIDDEN_ATTRIBUTES == {"now"}
