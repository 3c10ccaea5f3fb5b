"""``budgetq load FILE --set NAME``: bulk-load issues from CSV or JSONL, reporting every rejected row.

Exit codes: 0 every row loaded; 1 some rows rejected (without ``--strict`` the good rows were
loaded, with it nothing was); 2 the file or the database could not be used at all.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.loading import LoadReport, load_issues
from budgetq.cli import app
from budgetq.cli.environment import console, database, fail, fail_line
from budgetq.domain import ingest
from budgetq.errors import BudgetqError, IngestError
from budgetq.settings import Settings

out = Console(highlight=False)


def load_path(
    sessions: sessionmaker[Session],
    path: Path,
    set_name: str,
    *,
    max_text_chars: int,
    strict: bool = False,
    nightly: bool = False,
    fmt: str | None = None,
) -> LoadReport:
    """Read ``path`` (CSV or JSONL, by ``fmt`` or its suffix) and load it into the set in one transaction."""
    kind = fmt or ingest.format_of(path.name)
    try:
        # utf-8-sig drops a byte-order mark; surrogateescape lets a bad byte reject its row, not the file.
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as lines:
            # A CSV field is read up to one character over the text limit, never a GiB of it.
            rows = ingest.read_rows(lines, kind, max_field_chars=max_text_chars + 1)
            return load_issues(
                sessions, set_name, rows, max_text_chars=max_text_chars, strict=strict, nightly=nightly
            )
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _print_rejections(report: LoadReport, show: int) -> None:
    table = Table(title=f"{len(report.rejected):,} rejected rows", title_justify="left")
    table.add_column("line", justify="right")
    table.add_column("reason", overflow="fold")
    for rejection in report.rejected[:show]:
        table.add_row(str(rejection.line), escape(rejection.reason))
    if len(report.rejected) > show:
        table.caption = f"… and {len(report.rejected) - show:,} more; --rejected-csv PATH writes them all"
    out.print(table)


def _check_writable(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise typer.BadParameter(
            f"cannot write {str(path)!r}: its folder is missing or read-only", param_hint="'--rejected-csv'"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise typer.BadParameter(
            f"cannot write {str(path)!r}: the file is read-only", param_hint="'--rejected-csv'"
        )


def _write_rejections(report: LoadReport, path: Path) -> None:
    # surrogateescape writes a line's undecodable bytes back as they were in the file.
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "external_id", "reason", "raw"])
        writer.writerows((r.line, r.external_id or "", r.reason, r.raw or "") for r in report.rejected)


@app.command()
def load(
    file: Annotated[Path, typer.Argument(help="A .csv (header: external_id,priority,text) or .jsonl file.")],
    set_name: Annotated[str, typer.Option("--set", help="The issue set to load into (created if new).")],
    strict: Annotated[bool, typer.Option("--strict", help="Load nothing if any row is rejected.")] = False,
    nightly: Annotated[
        bool, typer.Option("--nightly", help="Mark the set for the nightly schedule.")
    ] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the suffix).")
    ] = None,
    show: Annotated[int, typer.Option(min=0, help="Rejected rows to show (all are counted).")] = 50,
    rejected_csv: Annotated[Path | None, typer.Option(help="Write every rejected row to this CSV.")] = None,
) -> None:
    """Load issues from FILE into a set with PostgreSQL COPY, in one transaction; bad rows are reported."""
    if not set_name.strip():
        raise typer.BadParameter("an issue set needs a name", param_hint="'--set'")
    if rejected_csv is not None:
        # Checked before loading: a write failing after the commit would hide the "loaded" line.
        _check_writable(rejected_csv)
    settings = Settings()
    try:
        with database(settings) as (_, sessions):
            report = load_path(
                sessions,
                file,
                set_name,
                max_text_chars=settings.ingest_max_text_chars,
                strict=strict,
                nightly=nightly,
                fmt=fmt,
            )
    except BudgetqError as exc:
        raise fail(exc) from exc
    if report.rejected:
        _print_rejections(report, show)
        if rejected_csv is not None:
            _write_rejections(report, rejected_csv)
    if not report.committed and not report.rejected:
        # A header and no rows: nothing was wrong, there was just nothing to load.
        out.print(
            f"nothing to load: {file} has no rows, so the set {set_name!r} was not created", soft_wrap=True
        )
        return
    if not report.committed:
        if strict and report.rejected:
            reason = (
                f"--strict: {len(report.rejected):,} rows rejected, so nothing was loaded into {set_name!r}"
            )
        else:
            reason = f"no row of {file} could be loaded, so the set {set_name!r} was not created"
        fail_line(reason)
        raise typer.Exit(1)
    new = "new set" if report.created else "existing set"
    out.print(
        f"loaded {report.loaded:,} issues into {set_name!r} ({new}, id {report.set_id})", soft_wrap=True
    )
    if report.rejected:
        console.print(
            f"[yellow]{len(report.rejected):,} rows rejected[/yellow] (listed above); the rest was loaded",
            soft_wrap=True,
        )
        raise typer.Exit(1)
