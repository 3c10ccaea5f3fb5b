"""Reading diagnoses for export: the ``latest_diagnoses`` view of a set, or ``run_diagnoses`` of one run.

The issue attributes (source, dataset, column, check, owner, tags) are read from the ``issues`` row
when its table has those columns (the loaders add them), else exported as NULL; filtering on one of
them before it exists is an ExportError, not an empty answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from budgetq.errors import ExportError

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


def issue_columns(session: Session) -> dict[str, str]:
    """The ``issues`` table's columns and their data types, as the database has them now."""
    rows = session.execute(
        text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'issues'"
        )
    )
    return {name: kind for name, kind in rows}


def _attribute_filter(column: str, kind: str, option: str) -> str:
    if option != "tag":
        return f"i.{column} = :{option}"
    if kind == "ARRAY":
        return f":{option} = ANY(i.{column})"
    if kind == "jsonb":
        return f"i.{column} ? :{option}"
    # Tags kept as text: a comma-separated list.
    return f":{option} = ANY(string_to_array(replace(i.{column}, ' ', ''), ','))"


def _query(present: Mapping[str, str], filters: Filters, *, by_run: bool) -> tuple[str, dict[str, Any]]:
    attrs = ", ".join(
        f"i.{column}::text AS {name}" if column in present else f"NULL::text AS {name}"
        for name, column in ATTRIBUTES
    )
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
    wanted = {"owner": "owner", "tag": "tags", "dataset": "dataset"}
    for option, column in wanted.items():
        value = getattr(filters, option)
        if value is None:
            continue
        if column not in present:
            raise ExportError(
                f"--{option} is not available: issues have no {column!r} column yet; "
                "load results with a tool loader first"
            )
        where.append(_attribute_filter(column, present[column], option))
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
    sql, params = _query(issue_columns(session), filters, by_run=run_id is not None)
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
