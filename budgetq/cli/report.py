"""``budgetq report``: what the calls cost and where it went, read from the SQL cost views."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.reports import CostBy, Report, RunReport, cost_report, run_report
from budgetq.cli import app
from budgetq.cli.environment import database, fail
from budgetq.errors import BudgetqError
from budgetq.settings import Settings

report_app = typer.Typer(
    help="Cost and tokens from the SQL cost views: by day, run, set, model, priority, owner, tag, dataset "
    "or source, or one run.",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")

_DAYS_AGO = re.compile(r"^([0-9]{1,6})d$")


class OutputFormat(StrEnum):
    """How a report is printed."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def parse_since(value: str, today: dt.date) -> dt.date:
    """A day from ``YYYY-MM-DD``, ``today``, ``yesterday`` or ``Nd`` (N days before ``today``)."""
    lowered = value.strip().lower()
    bad = typer.BadParameter(
        f"{value!r} is not a day; use YYYY-MM-DD, today, yesterday or Nd (e.g. 7d)", param_hint="'--since'"
    )
    if not lowered.isascii():
        raise bad  # "٧d" or a date in other digits: int() and fromisoformat() would read them
    if lowered == "today":
        return today
    if lowered == "yesterday":
        return today - dt.timedelta(days=1)
    days_ago = _DAYS_AGO.match(lowered)
    try:
        if days_ago:
            return today - dt.timedelta(days=int(days_ago.group(1)))
        return dt.date.fromisoformat(lowered)
    except (ValueError, OverflowError):
        raise bad from None


def _plain(value: object) -> object:
    """A JSON-ready value: USD as a string with 6 decimals (exact), days and times as ISO text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(_plain(value))


@contextmanager
def read_session(settings: Settings) -> Iterator[Session]:
    """A transaction on the configured database (checked to be migrated) or the embedded one."""
    with database(settings) as (_, sessions), transaction(sessions) as session:
        yield session


# Short headings for the table; csv and json keep the views' column names.
_HEADINGS = {
    "failed_attempts": "failed",
    "failed_calls": "failed",
    "issues_answered": "answered",
    "issues_failed": "failed issues",
    "billed_input_tokens": "billed input",
    "output_tokens": "output",
    "cache_read_tokens": "cache read",
    "cost_usd": "cost $",
    "billed_cost_usd": "billed $",
    "would_have_cost_usd": "would-have $",
    "wasted_cost_usd": "wasted $",
    "set_name": "set",
    "run_id": "run",
}


def _show(renderable: Table) -> None:
    """Print to stdout; when it is not a terminal (a pipe, a file) as wide as the table needs."""
    console = Console()
    if not console.is_terminal:
        wide = console.options.update(max_width=10_000)
        console = Console(width=max(80, console.measure(renderable, options=wide).maximum))
    console.print(renderable)


def print_report(report: Report, fmt: OutputFormat, title: str, *, raw: bool = False) -> None:
    """Print a report as a table, CSV or JSON on stdout; a ``raw`` table keeps the column names as they
    are and adds no total row (for any query's result)."""
    if fmt is OutputFormat.JSON:
        print(json.dumps([{k: _plain(v) for k, v in r.items()} for r in report.records()]))
        return
    if fmt is OutputFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(report.columns)
        writer.writerows([[_plain(v) for v in row] for row in report.rows])
        return
    table = Table(title=title, show_footer=not raw and bool(report.rows))
    sums = {} if raw else report.totals()
    headings = {} if raw else _HEADINGS
    for i, name in enumerate(report.columns):
        footer = "total" if i == 0 else (_cell(sums[name]) if name in sums else "")
        numeric = name in sums
        table.add_column(headings.get(name, name), footer=footer, justify="right" if numeric else "left")
    for row in report.rows:
        table.add_row(*(_cell(v) for v in row))
    _show(table)


@report_app.command("cost")
def cost(
    by: Annotated[
        CostBy,
        typer.Option(
            "--by",
            help="Group by day, run, issue set, model, priority, or the issues' owner, tag, dataset, source.",
        ),
    ] = (CostBy.DAY),
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DAY", help="Only days from this one on: YYYY-MM-DD, today, yesterday or Nd (e.g. 7d)."
        ),
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json.")] = OutputFormat.TABLE,
) -> None:
    """Cost and tokens grouped by one dimension (days are UTC; runs are dated by when they were planned)."""
    since_day = parse_since(since, dt.datetime.now(dt.UTC).date()) if since is not None else None
    settings = Settings()
    try:
        with read_session(settings) as session:
            report = cost_report(session, by, since_day)
    except BudgetqError as exc:
        raise fail(exc) from exc
    title = f"cost by {by.value}" + (f" since {since_day.isoformat()}" if since_day else "")
    print_report(report, fmt, title)


def _line(values: Mapping[str, object], names: Sequence[tuple[str, str]]) -> str:
    return " · ".join(f"{label} {_cell(values.get(key))}" for label, key in names)


def _print_run(report: RunReport) -> None:
    r = report.run
    title = " · ".join(str(r[k]) for k in ("set_name", "kind", "mode", "model", "status"))
    table = Table(title=f"run {r['run_id']} · {title}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        f"issues {r['issues']}",
        _line(
            r,
            [
                ("answered", "issues_answered"),
                ("failed", "issues_failed"),
                ("oversize", "issues_oversize"),
                ("deferred", "issues_deferred"),
                ("pending", "issues_pending"),
            ],
        ),
    )
    table.add_row(
        f"batches {r['batches']}",
        _line(
            r,
            [
                ("succeeded", "batches_succeeded"),
                ("failed", "batches_failed"),
                ("split", "batches_split"),
                ("open", "batches_open"),
            ],
        ),
    )
    table.add_row(
        f"attempts {r['attempts']}",
        _line(r, [("ok", "ok_calls"), ("failed", "failed_attempts"), ("retries", "retries")]),
    )
    table.add_row(
        "utilization",
        _line(
            r,
            [
                ("min", "utilization_min"),
                ("median", "utilization_median"),
                ("p95", "utilization_p95"),
                ("max", "utilization_max"),
            ],
        ),
    )
    table.add_row(
        "tokens",
        _line(
            r,
            [
                ("input", "input_tokens"),
                ("cache write", "cache_write_tokens"),
                ("cache read", "cache_read_tokens"),
                ("billed input", "billed_input_tokens"),
                ("output", "output_tokens"),
            ],
        ),
    )
    table.add_row(
        f"cost {_cell(r['cost_usd'])} USD",
        _line(
            r,
            [
                ("billed", "billed_cost_usd"),
                ("would-have", "would_have_cost_usd"),
                ("retries", "retry_cost_usd"),
                ("wasted", "wasted_cost_usd"),
                ("cap", "spend_cap_usd"),
            ],
        ),
    )
    _show(table)
    if report.outcomes:
        outcomes = Table(title="attempts by outcome")
        for name in report.outcomes[0]:
            outcomes.add_column(_HEADINGS.get(name, name))
        for o in report.outcomes:
            outcomes.add_row(*(_cell(v) for v in o.values()))
        _show(outcomes)


@report_app.command("run")
def run(
    run_id: Annotated[
        int, typer.Argument(metavar="RUN", help="The run's id (see `budgetq report cost --by run`).")
    ],
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json.")] = OutputFormat.TABLE,
) -> None:
    """One run: issue and batch counts, attempts and retries, utilization (min/median/p95/max), cost."""
    settings = Settings()
    try:
        with read_session(settings) as session:
            report = run_report(session, run_id)
    except BudgetqError as exc:
        raise fail(exc) from exc
    if fmt is OutputFormat.JSON:
        print(
            json.dumps(
                {
                    "run": {k: _plain(v) for k, v in report.run.items()},
                    "outcomes": [{k: _plain(v) for k, v in o.items()} for o in report.outcomes],
                }
            )
        )
    elif fmt is OutputFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(report.run.keys())
        writer.writerow([_plain(v) for v in report.run.values()])
    else:
        _print_run(report)
