"""Reading diagnoses for export: the ``latest_diagnoses`` view of a set, or ``run_diagnoses`` of one run.

The issue attributes (source, dataset, column, check, owner, tags) are read from the ``issues`` row
(its columns since migration 0009); an issue loaded from CSV or JSON Lines has them NULL (tags empty).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# Exported column -> the issues column it is read from, in export order.
ATTRIBUTES = (
    ("source", "source"),
    ("dataset", "dataset"),
    ("column_name", "column_name"),
    ("check_name", "check_name"),
    ("owner", "owner"),
    ("tags", "tags"),
)
COLUMNS = (
    "issue_id",
    "external_id",
    *(name for name, _ in ATTRIBUTES),
    "priority",
    "status",
    "reason",
    "category",
    "diagnosis",
    "proposed_fix",
    "confidence",
    "run_id",
    "answered_at",
    "cost_usd",
    # A reused answer (status reused): the run that bought it, and when.
    "reused_from_run_id",
    "reused_from_answered_at",
)
FETCH_ROWS = 2000  # rows per round trip: an export of any size streams in constant memory


@dataclass(frozen=True)
class Filters:
    """What `budgetq results` narrows to; None means no filter."""

    status: str | None = None
    priority: int | None = None
    since: dt.datetime | None = None
    owner: str | None = None
    tag: str | None = None
    dataset: str | None = None


# The filter each attribute option adds; tags are a text[] (an issue's tags, any of which matches).
ATTRIBUTE_FILTERS = {
    "owner": "i.owner = :owner",
    "tag": ":tag = ANY(i.tags)",
    "dataset": "i.dataset = :dataset",
}


def _query(filters: Filters, *, by_run: bool) -> tuple[str, dict[str, Any]]:
    attrs = ", ".join(f"i.{column}::text AS {name}" for name, column in ATTRIBUTES)
    source = "run_diagnoses" if by_run else "latest_diagnoses"
    where = ["d.run_id = :run_id"] if by_run else ["d.set_id = :set_id"]
    params: dict[str, Any] = {}
    if filters.status is not None:
        where.append("d.status = :status")
        params["status"] = filters.status
    if filters.priority is not None:
        where.append("d.priority = :priority")
        params["priority"] = filters.priority
    if filters.since is not None:
        where.append("COALESCE(d.answered_at, r.created_at) >= :since")
        params["since"] = filters.since
    for option, condition in ATTRIBUTE_FILTERS.items():
        value = getattr(filters, option)
        if value is not None:
            where.append(condition)
            params[option] = value
    sql = (
        f"SELECT d.issue_id, d.external_id, {attrs}, d.priority, d.status, d.reason, d.category, "
        "d.diagnosis, d.proposed_fix, d.confidence, d.run_id, d.answered_at, d.cost_usd, "
        "d.reused_from_run_id, d.reused_from_answered_at "
        f"FROM {source} d JOIN issues i ON i.id = d.issue_id JOIN runs r ON r.id = d.run_id "
        f"WHERE {' AND '.join(where)} ORDER BY d.priority DESC, d.issue_id"
    )
    return sql, params


def diagnoses(
    session: Session, *, set_id: int | None = None, run_id: int | None = None, filters: Filters = Filters()
) -> Iterator[dict[str, Any]]:
    """The rows to export, highest priority first: the latest per issue of set ``set_id``, or every
    issue of run ``run_id``; each a dict keyed by ``COLUMNS``. Streamed from a server-side cursor."""
    if (set_id is None) == (run_id is None):
        raise ValueError("give exactly one of set_id and run_id")
    sql, params = _query(filters, by_run=run_id is not None)
    params |= {"run_id": run_id} if run_id is not None else {"set_id": set_id}
    result = session.execute(text(sql).execution_options(yield_per=FETCH_ROWS), params)
    for row in result.mappings():
        yield dict(row)


def run_set(session: Session, run_id: int) -> str | None:
    """The set name of run ``run_id``; None when there is no such run."""
    name = session.scalar(
        text("SELECT s.name FROM runs r JOIN issue_sets s ON s.id = r.set_id WHERE r.id = :r"), {"r": run_id}
    )
    return None if name is None else str(name)
