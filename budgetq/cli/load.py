"""``budgetq load PATH --set NAME``: bulk-load issues from CSV/JSONL or from a data-quality tool's results.

PATH is a CSV or JSONL file of ``priority,text`` rows, or a result file of dbt (run_results.json, or
the folder holding it or its target/), Great Expectations, Soda or Elementary, told from its content
(or named with ``--from``). Exit codes: 0 loaded (or nothing failing: "nothing to load"); 1 some
rows or checks rejected (without ``--strict`` the good ones were loaded, with it nothing was); 2 the
file or the database could not be used at all (nothing was loaded).
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
from budgetq.domain.loaders.detect import TOOL_FORMATS, LoadFormat
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


def _format_of(path: Path, source: LoadFormat | None, fmt: str | None) -> LoadFormat:
    """The format: ``--from`` (checked against the content), ``--format``, the suffix or the content."""
    from budgetq.services.loading import resolve_path, row_file_format, sniff

    if source is None and fmt is not None:
        if fmt not in ingest.FORMATS:
            raise IngestError(f"unknown format {fmt!r}; use one of: {', '.join(ingest.FORMATS)}")
        return LoadFormat(fmt)
    if source in (LoadFormat.CSV, LoadFormat.JSONL):
        return source
    if source is None and path.suffix.lower() in (".csv", ".jsonl", ".ndjson") and not path.is_dir():
        # A missing file is reported by the CSV/JSONL loader, as before.
        suffix = LoadFormat(ingest.format_of(path.name))
        return row_file_format(path, suffix) if path.is_file() else suffix
    resolved = resolve_path(path)
    found = sniff(resolved, source)
    if found in (LoadFormat.CSV, LoadFormat.JSONL) and source is None:
        ingest.format_of(resolved.name)  # not JSON and no telling suffix: the loader's own message
    return found


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


def _check_options(set_name: str, rejected_csv: Path | None) -> None:
    if not set_name.strip():
        raise typer.BadParameter("an issue set needs a name", param_hint="'--set'")
    if rejected_csv is not None:
        # Checked before loading: a write failing after the commit would hide the "loaded" line.
        _check_writable(rejected_csv)


def _check_applies(
    kind: LoadFormat,
    snapshot: bool,
    *,
    rejected_csv: Path | None,
    manifest: Path | None,
    priority_map: Path | None,
) -> None:
    """Refuse an option this kind of load would silently ignore: the user expects what it promises."""
    rows = kind not in TOOL_FORMATS
    if manifest is not None and kind is not LoadFormat.DBT:
        raise fail(IngestError(f"--manifest applies to dbt results only; {kind.value} files have none"))
    if priority_map is not None and rows:
        raise fail(
            IngestError(
                "--priority-map applies to tool result files (dbt, gx, soda, elementary, re_data); "
                f"a {kind.value} file gives each row's priority"
            )
        )
    if rejected_csv is not None and (snapshot or not rows):
        raise fail(
            IngestError(
                "--rejected-csv applies to CSV/JSONL loads without --snapshot; this load lists what it "
                "refuses on the terminal"
            )
        )


def _print_counts(kind: LoadFormat, set_name: str, report: LoadReport) -> None:
    out.print_json(
        data={
            "source": kind.value,
            "set": set_name,
            "read": report.loaded + len(report.rejected),
            "loaded": report.loaded if report.committed else 0,
            "rejected": len(report.rejected),
            "skipped_passing": 0,
        }
    )


@app.command()
def load(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="PATH",
            help="A .csv (header: external_id,priority,text) or .jsonl file, or a dbt, Great Expectations, "
            "Soda or Elementary result file (a dbt target/ folder will do).",
        ),
    ],
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
    source: Annotated[
        LoadFormat | None,
        typer.Option("--from", help="csv, jsonl, dbt, gx, soda or elementary (default: from the content)."),
    ] = None,
    snapshot: Annotated[
        bool,
        typer.Option(
            "--snapshot", help="The set then holds exactly the checks (ids) in PATH; the others are resolved."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object of counts.")] = False,
    manifest: Annotated[
        Path | None, typer.Option(help="dbt: the manifest.json (default: beside it).")
    ] = None,
    priority_map: Annotated[
        Path | None, typer.Option(help="A TOML file of priorities by check, tag, severity or status.")
    ] = None,
) -> None:
    """Load issues from PATH into a set with PostgreSQL COPY, in one transaction; bad rows are reported."""
    _check_options(set_name, rejected_csv)
    settings = Settings()
    try:
        kind = _format_of(file, source, fmt)
    except BudgetqError as exc:
        raise fail(exc) from exc
    _check_applies(kind, snapshot, rejected_csv=rejected_csv, manifest=manifest, priority_map=priority_map)
    if kind in TOOL_FORMATS:
        from budgetq.cli.load_tools import load_tool

        load_tool(settings, file, kind, set_name, snapshot, nightly, manifest, priority_map, as_json)
        return
    if snapshot:
        from budgetq.cli.load_tools import load_rows_snapshot

        load_rows_snapshot(settings, file, kind, set_name, nightly, as_json)
        return
    try:
        with database(settings) as (_, sessions):
            report = load_path(
                sessions,
                file,
                set_name,
                max_text_chars=settings.ingest_max_text_chars,
                strict=strict,
                nightly=nightly,
                fmt=kind.value,
            )
    except BudgetqError as exc:
        raise fail(exc) from exc
    _tell(report, kind, file, set_name, strict=strict, show=show, rejected_csv=rejected_csv, as_json=as_json)


def _tell(
    report: LoadReport,
    kind: LoadFormat,
    file: Path,
    set_name: str,
    *,
    strict: bool,
    show: int,
    rejected_csv: Path | None,
    as_json: bool,
) -> None:
    """Say what a CSV/JSONL load did, and exit 1 when rows were rejected or nothing could be loaded."""
    if as_json:
        _print_counts(kind, set_name, report)
    if report.rejected:
        if not as_json:
            _print_rejections(report, show)
        if rejected_csv is not None:  # with --json too: the file is what a script reads the rows from
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
    if not as_json:
        out.print(
            f"loaded {report.loaded:,} issues into {set_name!r} ({new}, id {report.set_id})", soft_wrap=True
        )
    if report.rejected:
        console.print(
            f"[yellow]{len(report.rejected):,} rows rejected[/yellow] (listed above); the rest was loaded",
            soft_wrap=True,
        )
        raise typer.Exit(1)
