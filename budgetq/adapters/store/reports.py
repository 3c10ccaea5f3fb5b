"""Reports read from the cost views of migration 0003: the numbers `budgetq report` prints.

Each report is a plain query over one view, so the same figures come out of any SQL client.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import BigInteger, ColumnElement, Numeric, column, desc, func, select, table, text
from sqlalchemy.orm import Session

from budgetq.errors import NotFoundError, QueryFailedError


class CostBy(StrEnum):
    """The dimensions `budgetq report cost --by` can group by."""

    DAY = "day"
    RUN = "run"
    SET = "set"
    MODEL = "model"
    PRIORITY = "priority"
    OWNER = "owner"
    TAG = "tag"
    DATASET = "dataset"
    SOURCE = "source"


@dataclass(frozen=True)
class CostView:
    """How one dimension is read: its view, the columns that key a row, the measures summed per key."""

    view: str
    keys: tuple[str, ...]
    measures: tuple[str, ...]
    newest_first: bool = False


CALL_MEASURES = (
    "attempts",
    "failed_attempts",
    "retries",
    "billed_input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cost_usd",
    "billed_cost_usd",
    "would_have_cost_usd",
    "wasted_cost_usd",
)

ISSUE_VIEW_MEASURES = (
    "issues",
    "calls",
    "failed_calls",
    "billed_input_tokens",
    "output_tokens",
    "cost_usd",
    "billed_cost_usd",
    "would_have_cost_usd",
)

COST_VIEWS: Mapping[CostBy, CostView] = {
    CostBy.DAY: CostView("cost_by_day", ("day",), CALL_MEASURES, newest_first=True),
    CostBy.RUN: CostView(
        "cost_by_run",
        ("run_id", "set_name", "kind", "status"),
        ("issues", "issues_answered", "issues_failed", *CALL_MEASURES),
        newest_first=True,
    ),
    CostBy.SET: CostView("cost_by_set", ("set_name",), CALL_MEASURES),
    CostBy.MODEL: CostView("cost_by_model", ("model",), CALL_MEASURES),
    CostBy.PRIORITY: CostView("cost_by_priority", ("priority",), ISSUE_VIEW_MEASURES, newest_first=True),
    # Migration 0009: the issues' owner, tag, dataset and source tool (NULL for CSV/JSONL issues).
    **{
        by: CostView(f"cost_by_{by.value}", (by.value,), ISSUE_VIEW_MEASURES)
        for by in (CostBy.OWNER, CostBy.TAG, CostBy.DATASET, CostBy.SOURCE)
    },
}

USD_SCALE = Decimal("0.000001")


@dataclass(frozen=True)
class Report:
    """A table of figures: column names and rows of plain values (int, Decimal, str, date); ``measures``
    names the columns that add up (the others are keys)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]
    measures: tuple[str, ...] = ()

    def records(self) -> list[dict[str, object]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def totals(self) -> dict[str, Decimal]:
        """The sum of each measure over the rows."""
        out: dict[str, Decimal] = {}
        for name in self.measures:
            i = self.columns.index(name)
            out[name] = sum(
                (Decimal(str(0 if row[i] is None else row[i])) for row in self.rows), start=Decimal(0)
            )
        return out


@dataclass(frozen=True)
class RunReport:
    """One run as the cost views see it: its ``cost_by_run`` row and its attempts by outcome."""

    run: Mapping[str, object]
    outcomes: tuple[Mapping[str, object], ...]


def _measure(view_column: ColumnElement[object], name: str) -> ColumnElement[object]:
    kind = Numeric(18, 6) if name.endswith("_usd") else BigInteger()
    return func.coalesce(func.sum(view_column), 0).cast(kind).label(name)


def cost_report(session: Session, by: CostBy, since: dt.date | None = None) -> Report:
    """Cost and tokens grouped by ``by``, over the days from ``since`` on (all days when None)."""
    spec = COST_VIEWS[by]
    view = table(spec.view, column("day"), *(column(n) for n in (*spec.keys, *spec.measures)))
    keys = [view.c[k] for k in spec.keys]
    stmt = select(*keys, *(_measure(view.c[m], m) for m in spec.measures)).group_by(*keys)
    if since is not None:
        stmt = stmt.where(view.c.day >= since)
    stmt = stmt.order_by(*(desc(k) for k in keys) if spec.newest_first else keys)
    rows = tuple(tuple(row) for row in session.execute(stmt))
    return Report(columns=(*spec.keys, *spec.measures), rows=rows, measures=spec.measures)


def run_report(session: Session, run_id: int) -> RunReport:
    """The ``cost_by_run`` row of ``run_id`` and its ``attempts_by_outcome`` rows."""
    row = session.execute(
        text("SELECT * FROM cost_by_run WHERE run_id = :run"), {"run": run_id}
    ).one_or_none()
    if row is None:
        latest = session.scalars(text("SELECT run_id FROM cost_by_run ORDER BY run_id DESC LIMIT 5")).all()
        known = ", ".join(str(r) for r in latest) or "none yet"
        raise NotFoundError(f"no run with id {run_id}; the latest runs are: {known}")
    outcomes = session.execute(
        text(
            "SELECT status, http_status, error_type, sum(attempts)::bigint AS attempts, "
            "sum(retries)::bigint AS retries, sum(cost_usd) AS cost_usd, "
            "sum(wasted_cost_usd) AS wasted_cost_usd "
            "FROM attempts_by_outcome WHERE run_id = :run "
            "GROUP BY status, http_status, error_type ORDER BY sum(attempts) DESC, status"
        ),
        {"run": run_id},
    ).mappings()
    return RunReport(run=dict(row._mapping), outcomes=tuple(dict(o) for o in outcomes))


def read_query(session: Session, sql: str, limit: int = 10_000, *, timeout_s: float = 30.0) -> Report:
    """Run the one statement ``sql`` in a read-only transaction bounded by ``timeout_s`` and return at
    most ``limit`` of its rows; a refused or failed statement raises QueryFailedError."""
    import psycopg

    session.execute(text("SET TRANSACTION READ ONLY"))
    session.execute(
        text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": f"{int(timeout_s * 1000)}"}
    )
    raw = session.connection().connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        # The extended protocol runs exactly one statement: "COMMIT; DELETE ..." cannot leave the read-only
        # transaction (the simple protocol would run both). stream() is psycopg's way to force it without
        # reading the text for %-placeholders.
        with raw.cursor() as cursor:
            rows: list[tuple[object, ...]] = []
            for row in cursor.stream(sql.encode()):
                if len(rows) < limit:
                    rows.append(tuple(row))
            columns = tuple(c.name for c in cursor.description or ())
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QueryFailedError(f"the query failed: {reason}") from exc
    if not columns:
        return Report((), ())
    return Report(columns, tuple(rows))
