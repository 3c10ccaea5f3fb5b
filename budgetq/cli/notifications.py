"""``budgetq notifications``: the outbox, newest first: each event and its delivery to each target."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from budgetq.adapters.notify.targets import parse_targets
from budgetq.adapters.store import deliveries
from budgetq.adapters.store.engine import transaction
from budgetq.cli import app
from budgetq.cli.environment import database, fail, fail_line
from budgetq.errors import BudgetqError
from budgetq.settings import Settings


@app.command()
def notifications(
    limit: Annotated[int, typer.Option(help="At most this many notifications, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List recent notifications and their deliveries (targets in redacted form: URLs are secrets)."""
    if limit < 1:
        raise typer.Exit(fail_line(f"--limit must be at least 1, not {limit}"))
    settings = Settings()
    try:
        names = {t.digest: t.redacted for t in parse_targets(settings.notify_urls)}
        with database(settings) as (_, sessions), transaction(sessions) as session:
            rows = deliveries.recent(session, limit)
    except BudgetqError as exc:
        raise fail(exc) from exc
    if as_json:
        for r in rows:
            shown = names.get(r.target or "", r.target)
            print(json.dumps({**r.__dict__, "target": shown}, default=str, ensure_ascii=False))
        return
    table = Table("id", "event", "at", "target", "status", "tries", "last")
    for r in rows:
        last = r.last_error or ("" if r.last_status is None else f"HTTP {r.last_status}")
        target = names.get(r.target or "", r.target or "(not yet picked up)")
        table.add_row(
            str(r.notification_id), r.kind, f"{r.created_at:%Y-%m-%d %H:%M:%S}", target,
            r.status or "", str(r.attempts), last,
        )  # fmt: skip
    Console(highlight=False).print(table if rows else "no notifications yet")
