"""``budgetq sets``, ``budgetq runs [--set] [--status]``, ``budgetq cancel RUN`` and ``budgetq reuse SET``.

``cancel`` exits 0 once the cancel is committed: the run's queued batches end ``cancelled`` and are
never called; batches whose call is in flight finish and are recorded, and none is tried again.
Their issues are taken by ``budgetq reprocess SET --failed-only`` (failed and cancelled issues).
Exit code 2: an unknown set or run, a run that already ended, an unknown status.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import lifecycle as store
from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.reuse import set_reuse_answers
from budgetq.cli import app
from budgetq.cli.environment import database, fail, fail_line
from budgetq.domain.selector import MAX_ID
from budgetq.domain.statuses import RunStatus
from budgetq.errors import BudgetqError
from budgetq.settings import Settings


def _show(renderable: Table | str) -> None:
    """Print to stdout; when it is not a terminal (a pipe, a file) as wide as the table needs."""
    console = Console(highlight=False)
    if not console.is_terminal and isinstance(renderable, Table):
        wide = console.options.update(max_width=10_000)
        width = max(80, console.measure(renderable, options=wide).maximum)
        console = Console(highlight=False, width=width)
    console.print(renderable)


MAX_LIMIT = 100_000  # a listing, not an export: `budgetq db query` reads more
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")]


def _when(value: object) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


@app.command()
def sets(as_json: AsJson = False) -> None:
    """List the issue sets: issues, runs and the latest run of each."""
    try:
        with database(Settings()) as (_, sessions), transaction(sessions) as session:
            rows = store.list_sets(session)
    except BudgetqError as exc:
        raise fail(exc) from exc
    if as_json:
        for r in rows:
            print(json.dumps({**r.__dict__, "last_run_at": _when(r.last_run_at) or None}, ensure_ascii=False))
        return
    table = Table("set", "nightly", "issues", "runs", "latest run", "status", "at")
    for r in rows:
        last = "" if r.last_run_id is None else str(r.last_run_id)
        table.add_row(
            r.name, "yes" if r.nightly else "", f"{r.issues:,}", f"{r.runs:,}", last,
            r.last_run_status or "", _when(r.last_run_at),
        )  # fmt: skip
    _show(table if rows else "no issue sets yet: load one with `budgetq load FILE --set NAME`")


@app.command()
def runs(
    set_name: Annotated[str | None, typer.Option("--set", help="Only the runs of this issue set.")] = None,
    status: Annotated[RunStatus | None, typer.Option(help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first (1 to 100,000).")] = 50,
    as_json: AsJson = False,
) -> None:
    """List runs, newest first: set, kind, status, issues answered, spend."""
    if not 1 <= limit <= MAX_LIMIT:
        raise typer.Exit(fail_line(f"--limit must be from 1 to {MAX_LIMIT:,}, not {limit}"))
    try:
        with database(Settings()) as (_, sessions), transaction(sessions) as session:
            set_id = issue_store.set_id_by_name(session, set_name) if set_name is not None else None
            rows = store.list_runs(session, set_id, status.value if status else None, limit)
    except BudgetqError as exc:
        raise fail(exc) from exc
    if as_json:
        for r in rows:
            fields = {**r.__dict__, "spent_usd": str(r.spent_usd)}
            fields |= {"created_at": _when(r.created_at), "finished_at": _when(r.finished_at) or None}
            print(json.dumps(fields, ensure_ascii=False))
        return
    table = Table("run", "set", "kind", "status", "api", "answered", "spent", "started", "ended", "reason")
    for r in rows:
        table.add_row(
            str(r.id), r.set_name, r.kind, r.status, r.api_mode, f"{r.answered:,}/{r.issues:,}",
            f"${r.spent_usd:.4f}", _when(r.created_at), _when(r.finished_at), r.stop_reason or "",
        )  # fmt: skip
    _show(table if rows else "no runs match")


@app.command()
def cancel(
    run: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The run's id (see `budgetq runs`).")],
) -> None:
    """Cancel RUN: its queued batches are never called; calls in flight finish and are recorded."""
    try:
        with database(Settings()) as (_, sessions):
            with transaction(sessions) as session:
                done = store.cancel_run(session, run, f"cancelled by `budgetq cancel {run}`")
    except BudgetqError as exc:
        raise fail(exc) from exc
    Console(highlight=False).print(
        f"run {done.run_id} cancelled: {done.batches_cancelled:,} queued batches "
        f"({done.issues_cancelled:,} issues) will not be called; {done.batches_in_flight:,} in flight finish "
        "and are recorded. Their issues: `budgetq reprocess SET --failed-only`",
        soft_wrap=True,
    )


@app.command("reuse")
def reuse(
    set_name: Annotated[str, typer.Argument(metavar="SET", help="The issue set's name.")],
    enabled: Annotated[
        bool, typer.Option("--on/--off", help="Let the set's runs reuse earlier answers (the default).")
    ] = True,
) -> None:
    """Turn answer reuse on or off for SET's future runs (off: every issue is paid for on its own)."""
    try:
        with database(Settings()) as (_, sessions), transaction(sessions) as session:
            set_reuse_answers(session, issue_store.set_id_by_name(session, set_name), enabled)
    except BudgetqError as exc:
        raise fail(exc) from exc
    state = "on" if enabled else "off: every issue of it is paid for on its own"
    Console(highlight=False).print(f"answer reuse for set {set_name!r} is {state}", soft_wrap=True)
