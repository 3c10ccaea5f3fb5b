"""``budgetq db``: the schema."""

from __future__ import annotations

from typing import Annotated

import typer

from budgetq.cli import app
from budgetq.cli.environment import console, environment, fail
from budgetq.errors import BudgetqError
from budgetq.settings import Settings
from budgetq.store.db import upgrade

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Run the migrations against BUDGETQ_DATABASE_URL (or the embedded PostgreSQL)."""
    settings = Settings()
    try:
        with environment(settings, need_api=False) as env:
            upgrade(env.database_url, revision)
    except BudgetqError as exc:
        raise fail(exc) from exc
    console.print(f"database at {revision}")
