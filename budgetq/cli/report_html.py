"""``budgetq report html``: the cost views as one self-contained page a person opens in a browser."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from budgetq.adapters.html.page import render
from budgetq.adapters.store.dashboard import read_dashboard
from budgetq.cli.environment import fail, fail_line
from budgetq.cli.report import parse_since, read_session, report_app
from budgetq.errors import BudgetqError
from budgetq.settings import Settings


def _write_whole(path: Path, page: str) -> None:
    """Write ``page`` to a temporary file beside ``path`` and rename it over, so a reader never sees half."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(page)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@report_app.command("html")
def html(
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE", help="Where to write the page.")],
    since: Annotated[
        str, typer.Option(metavar="DAY", help="Days from this one on: YYYY-MM-DD, today, yesterday or Nd.")
    ] = "30d",
) -> None:
    """One self-contained HTML page (no network: styles, charts and script inline) of where the money went."""
    now = dt.datetime.now(dt.UTC)
    try:
        since_day = parse_since(since, now.date())
    except typer.BadParameter as exc:
        raise SystemExit(fail_line(f"--since {exc}")) from exc
    target = output.expanduser().resolve()
    if target.is_dir() or not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise SystemExit(
            fail_line(f"cannot write the report to {output}: its folder does not exist or is not writable")
        )
    settings = Settings()
    try:
        with read_session(settings) as session:
            data = read_dashboard(session, since_day, now)
    except BudgetqError as exc:
        raise fail(exc) from exc
    try:
        _write_whole(target, render(data))
    except OSError as exc:
        raise SystemExit(fail_line(f"cannot write the report to {output}: {exc.strerror}")) from exc
    typer.echo(f"wrote {target} (since {since_day.isoformat()}, {len(data.rows('diagnoses'))} diagnoses)")
