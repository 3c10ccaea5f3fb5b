"""``budgetq load`` of a data-quality tool's results: dbt, Great Expectations, Soda, Elementary.

Prints what was read and done (or one JSON object with ``--json``). Exit codes as for every load:
0 loaded, or nothing failing ("nothing to load"); 1 some checks could not be loaded (the rest
were); 2 the file could not be used (invalid or truncated JSON, another tool than ``--from`` says,
an unknown schema version, an unreadable manifest): nothing was loaded.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from budgetq.adapters.store.snapshots import load_tool_issues
from budgetq.cli.environment import console, database, fail
from budgetq.domain.loaders.detect import LoadFormat
from budgetq.errors import BudgetqError, IngestError
from budgetq.services.loading import (
    ToolLoad,
    load_priority_map,
    load_tool_file,
    read_snapshot_rows,
    resolve_path,
)
from budgetq.settings import Settings

out = Console(highlight=False)


def summary(load: ToolLoad, set_name: str, snapshot: bool) -> dict[str, object]:
    """The counts ``--json`` prints: what the file held and what the load did with it."""
    stored = load.stored
    data: dict[str, object] = {
        "source": load.source,
        "path": str(load.path),
        "set": set_name,
        "set_id": stored.set_id if stored else None,
        "read": load.parsed.read,
        "loaded": stored.loaded if stored else 0,
        "rejected": len(load.rejected) + (len(stored.refused) if stored else 0),
        "skipped_passing": load.parsed.skipped_passing,
        "failing": len(load.parsed.findings),
        "notes": list(load.parsed.notes),
    }
    if snapshot:
        for key in ("inserted", "changed", "unchanged", "reopened", "resolved"):
            data[key] = getattr(stored, key) if stored else 0
    return data


def load_tool(
    settings: Settings,
    path: Path,
    kind: LoadFormat,
    set_name: str,
    snapshot: bool,
    nightly: bool,
    manifest: Path | None,
    priority_map: Path | None,
    as_json: bool,
) -> None:
    """Run one tool load and report it; exits 1 when some checks were refused, 2 on a bad file."""
    try:
        mapping = load_priority_map(priority_map)
        resolved = resolve_path(path)
        with database(settings) as (_, sessions):
            load = load_tool_file(
                sessions,
                resolved,
                kind,
                set_name,
                snapshot=snapshot,
                nightly=nightly,
                manifest=manifest,
                mapping=mapping,
                max_detail_chars=settings.loader_max_detail_chars,
                max_text_chars=settings.ingest_max_text_chars,
            )
    except BudgetqError as exc:
        raise fail(exc) from exc
    data = summary(load, set_name, snapshot)
    refused = list(load.rejected) + [
        f"{external}: already in the set (load with --snapshot to refresh a recurring check)"
        for external in (load.stored.refused if load.stored else ())
    ]
    if as_json:
        out.print_json(data=data)
    else:
        for note in load.parsed.notes:
            console.print(f"[yellow]warning:[/yellow] {escape(note)}", soft_wrap=True)
        _print_human(data, load, snapshot)
        for reason in refused[:50]:
            console.print(f"[yellow]refused:[/yellow] {escape(reason)}", soft_wrap=True)
    if refused:
        raise typer.Exit(1)


def load_rows_snapshot(
    settings: Settings, path: Path, kind: LoadFormat, set_name: str, nightly: bool, as_json: bool
) -> None:
    """A CSV/JSONL file as a snapshot of the set: every row needs an external_id, and any rejected row
    loads nothing (a row left out would otherwise resolve its issue)."""
    try:
        issues, rejected = read_snapshot_rows(path, kind, settings.ingest_max_text_chars)
        if rejected:
            for rejection in rejected[:50]:
                console.print(f"line {rejection.line}: {escape(rejection.reason)}", soft_wrap=True)
            raise IngestError(
                f"--snapshot: {len(rejected):,} rows of {path.name} rejected (listed above), so nothing was "
                "loaded: a row left out would resolve its issue"
            )
        with database(settings) as (_, sessions):
            stored = load_tool_issues(sessions, set_name, issues, snapshot=True, nightly=nightly)
    except BudgetqError as exc:
        raise fail(exc) from exc
    data = {
        "source": kind.value,
        "set": set_name,
        "set_id": stored.set_id,
        "read": len(issues),
        "loaded": stored.loaded,
        "rejected": 0,
        "skipped_passing": 0,
        **{k: getattr(stored, k) for k in ("inserted", "changed", "unchanged", "reopened", "resolved")},
    }
    if as_json:
        out.print_json(data=data)
    else:
        out.print(
            f"snapshot of {set_name!r}: {stored.inserted:,} inserted, "
            f"{stored.changed:,} changed (due again), {stored.reopened:,} reopened, "
            f"{stored.unchanged:,} unchanged, {stored.resolved:,} resolved",
            soft_wrap=True,
        )


def _print_human(data: dict[str, object], load: ToolLoad, snapshot: bool) -> None:
    head = (
        f"{load.source}: read {data['read']:,} checks in {load.path.name}, "
        f"{data['skipped_passing']:,} passing, {data['failing']:,} not passing"
    )
    out.print(head, soft_wrap=True)
    if load.stored is None:
        out.print(
            f"nothing to load: no failing check, so the set {data['set']!r} is unchanged", soft_wrap=True
        )
        return
    if snapshot:
        out.print(
            f"snapshot of {data['set']!r}: {data['inserted']:,} inserted, "
            f"{data['changed']:,} changed (due again), "
            f"{data['reopened']:,} reopened, {data['unchanged']:,} unchanged, {data['resolved']:,} resolved",
            soft_wrap=True,
        )
    else:
        out.print(
            f"loaded {data['loaded']:,} issues into {data['set']!r} (id {data['set_id']})", soft_wrap=True
        )
