"""``budgetq db``: the schema."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from budgetq.adapters.store.engine import upgrade
from budgetq.adapters.store.reports import read_query
from budgetq.cli import app
from budgetq.cli.environment import console, environment, fail
from budgetq.cli.report import OutputFormat, print_report, read_session
from budgetq.errors import BudgetqError, ConfigurationError, QueryFailedError
from budgetq.settings import Settings

db_app = typer.Typer(help="The database: migrate it, or query it (the cost views).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Run the migrations against BUDGETQ_DATABASE_URL (or the embedded PostgreSQL)."""
    revision = revision.strip()
    if not revision:
        raise fail(ConfigurationError("give a revision to upgrade to (head, or one such as 0011)"))
    if revision.lower() == "base" or revision.startswith("-"):
        # Alembic's upgrade to a lower revision does nothing; saying "database at base" would be false.
        raise fail(
            ConfigurationError(
                f"`budgetq db upgrade {revision}` cannot go down: an upgrade only moves toward head and the "
                "database stays at its revision; a downgrade is a restore from backup (docs/operations.md)"
            )
        )
    settings = Settings()
    try:
        with environment(settings, need_api=False, need_broker=False) as env:
            at = upgrade(env.database_url, revision, connect_timeout_s=settings.db_connect_timeout_s)
    except BudgetqError as exc:
        raise fail(exc) from exc
    # Where the database is, read back: not the revision asked for, which it may already be above.
    console.print(f"database at {at}")


@db_app.command("query")
def db_query(
    sql: Annotated[
        str,
        typer.Argument(
            metavar="[SQL]",
            help="One statement, run read-only (SELECT * FROM cost_by_run); '-' or none: read it from stdin.",
        ),
    ] = "-",
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json.")] = OutputFormat.TABLE,
) -> None:
    """Run a read-only SQL query (e.g. docs/cost-reporting.md's queries: `budgetq db query < q.sql`)."""
    from sqlalchemy.exc import DBAPIError

    if sql == "-":
        # From stdin, a query may start with a "-- comment" line, which as an argument reads as an option.
        sql = sys.stdin.read()
    settings = Settings()
    try:
        with read_session(settings) as session:
            result = read_query(session, sql, timeout_s=settings.query_timeout_s)
    except BudgetqError as exc:
        raise fail(exc) from exc
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise fail(QueryFailedError(f"the query failed: {reason}")) from exc
    print_report(result, fmt, "", raw=True)
