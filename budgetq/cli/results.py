"""``budgetq results SET | --run N``: the diagnoses, as a table or exported to CSV, JSON Lines or Parquet.

By default the latest answer (else the latest status) of every issue of SET across its runs, from the
``latest_diagnoses`` view; ``--run N`` gives every issue of one run instead. Exit codes: 0 rows were
written; 1 nothing matched (one ``error:`` line); 2 bad input: an unknown set or run, a malformed
filter, an unwritable ``-o`` path, or Parquet without ``-o``.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from budgetq.adapters.export.files import Format, whole_file, write_csv, write_jsonl, write_parquet
from budgetq.adapters.store import diagnoses as store
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.cli import app
from budgetq.cli.environment import console, database, fail, fail_line
from budgetq.domain.ingest import ALLOWED_PRIORITIES
from budgetq.domain.statuses import IssueStatus
from budgetq.errors import BudgetqError, ExportError, NotFoundError
from budgetq.settings import Settings

AGO = re.compile(r"^([0-9]{1,9})([dhm])$")
TABLE_COLUMNS = ("external_id", "priority", "status", "category", "confidence", "diagnosis", "cost_usd")


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """``30d``, ``12h`` or ``45m`` before ``now``, or an ISO date or time (UTC when no zone is given)."""
    text = value.strip()
    bad = ExportError(f"--since {value!r} is neither 30d/12h/45m nor an ISO date such as 2026-12-01")
    if not text.isascii():
        raise bad  # "٧d" or a date in other digits: int() and fromisoformat() would read them
    ago = AGO.match(text)
    try:
        if ago:
            unit = {"d": "days", "h": "hours", "m": "minutes"}[ago.group(2)]
            return now - dt.timedelta(**{unit: int(ago.group(1))})
        when = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise bad from None  # OverflowError: further back than datetime reaches (99999999999d)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _filters(
    status: str | None, priority: int | None, since: str | None, **attrs: str | None
) -> store.Filters:
    if status is not None and status not in {s.value for s in IssueStatus}:
        known = ", ".join(s.value for s in IssueStatus)
        raise ExportError(f"--status {status!r} is not an issue status; one of {known}")
    if priority is not None and priority not in ALLOWED_PRIORITIES:
        raise ExportError(f"--priority {priority} is not one of {', '.join(map(str, ALLOWED_PRIORITIES))}")
    when = parse_since(since, dt.datetime.now(dt.UTC)) if since is not None else None
    return store.Filters(status, priority, when, attrs["owner"], attrs["tag"], attrs["dataset"])


def _print_table(rows: Iterator[dict[str, Any]]) -> int:
    table = Table(*TABLE_COLUMNS, "reused from", show_lines=False)
    n = 0
    for row in rows:
        cells = ("" if row[c] is None else str(row[c]) for c in TABLE_COLUMNS)
        table.add_row(*cells, _reused_from(row))
        n += 1
    Console(highlight=False).print(table)
    return n


def _reused_from(row: dict[str, Any]) -> str:
    """``run 12, 2026-12-03 10:00`` for a reused answer: where it was bought and when."""
    if row["reused_from_run_id"] is None:
        return ""
    return f"run {row['reused_from_run_id']}, {row['reused_from_answered_at']:%Y-%m-%d %H:%M}"


def _write(rows: Iterator[dict[str, Any]], fmt: Format, output: Path | None) -> int:
    columns = store.COLUMNS
    if fmt is Format.TABLE:
        if output is not None:
            raise ExportError("-o needs --format csv, jsonl or parquet; a table is printed")
        return _print_table(rows)
    if fmt is Format.PARQUET:
        if output is None:
            raise ExportError("--format parquet needs -o FILE (Parquet is binary, not for a terminal)")
        with whole_file(output) as part:
            return write_parquet(rows, columns, part)
    writer = write_csv if fmt is Format.CSV else write_jsonl
    if output is None:
        sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
        return writer(rows, columns, sys.stdout)
    with whole_file(output) as part, part.open("w", encoding="utf-8", newline="") as out:
        return writer(rows, columns, out)


@app.command()
def results(
    set_name: Annotated[str | None, typer.Argument(help="The issue set (latest answer per issue).")] = None,
    run: Annotated[int | None, typer.Option("--run", help="Every issue of this run instead.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only issues in this status (answered, failed, …).")
    ] = None,
    priority: Annotated[int | None, typer.Option(help="Only issues of this priority.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only rows answered (or run) since: 30d, 12h or a date.")
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Only issues of this owner (needs loaded owners).")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Only issues with this tag (needs loaded tags).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only issues of this dataset (needs datasets).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, csv, jsonl or parquet.")] = Format.TABLE,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file.")] = None,
) -> None:
    """Show or export diagnoses: latest per issue of SET, or every issue of --run N."""
    if (set_name is None) == (run is None):
        raise typer.Exit(fail_line("give an issue set or --run N (one of them)"))
    settings = Settings()
    try:
        filters = _filters(status, priority, since, owner=owner, tag=tag, dataset=dataset)
        with database(settings) as (_, sessions), transaction(sessions) as session:
            if run is not None:
                if store.run_set(session, run) is None:
                    raise NotFoundError(f"no run {run}; see `budgetq runs` for the runs there are")
                rows = store.diagnoses(session, run_id=run, filters=filters)
            else:
                assert set_name is not None
                rows = store.diagnoses(
                    session, set_id=issue_store.set_id_by_name(session, set_name), filters=filters
                )
            first = next(rows, None)
            what = f"run {run}" if run is not None else f"set {set_name!r}"
            if first is None:
                fail_line(f"no results for {what} match the filters given")
                raise typer.Exit(1)
            n = _write(chain([first], rows), fmt, output)
    except BudgetqError as exc:
        raise fail(exc) from exc
    if output is not None:
        console.print(f"{n:,} rows of {what} written to {output}", soft_wrap=True, highlight=False)
