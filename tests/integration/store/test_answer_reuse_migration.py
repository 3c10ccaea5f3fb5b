"""Migration 0013 adds the reuse columns, the status constraint and the reused/saved view columns, and
takes them away again, the views as they were."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade

INSERT_RUN = (
    "INSERT INTO runs (set_id, kind, status, mode, model, max_tokens, safe_utilization, context_window, "
    "calibration) VALUES (:s, 'manual', 'planned', 'standin', 'm', 100, 0.75, 1000, 1.0) RETURNING id"
)


def columns(conn: sqlalchemy.Connection, table: str) -> list[str]:
    return list(
        conn.scalars(
            text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
                "ORDER BY ordinal_position"
            ),
            {"t": table},
        )
    )


def test_reuse_columns_and_views_come_and_go(fresh_database: Callable[[], str]) -> None:
    # Given a database at 0012 with a run and the views' columns as they were
    url = fresh_database()
    downgrade(url, "0012")
    engine = make_engine(url)
    with engine.begin() as conn:
        set_id = conn.scalar(text("INSERT INTO issue_sets (name) VALUES ('m13') RETURNING id"))
        run_id = conn.scalar(text(INSERT_RUN), {"s": set_id})
        before = {view: columns(conn, view) for view in ("cost_by_run", "run_diagnoses", "latest_diagnoses")}

    # When it is upgraded
    upgrade(url, "0013")

    # Then every old view column is kept in place, the new ones come last, the old run reads zero
    with engine.begin() as conn:
        after = {view: columns(conn, view) for view in before}
        row = conn.execute(
            text("SELECT reused_issues, saved_usd FROM cost_by_run WHERE run_id = :r"), {"r": run_id}
        ).one()
        assert conn.scalar(text("SELECT reuse_answers FROM issue_sets WHERE id = :s"), {"s": set_id}) is True
    assert after["cost_by_run"] == [*before["cost_by_run"], "reused_issues", "saved_usd"]
    for view in ("run_diagnoses", "latest_diagnoses"):
        assert after[view] == [*before[view], "reused_from_run_id", "reused_from_answered_at"]
    assert tuple(row) == (0, 0)
    # And run_issues refuses a status that is not one of IssueStatus
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:
        issue = conn.scalar(
            text("INSERT INTO issues (set_id, priority, text, chars) VALUES (:s, 10, 'x', 1) RETURNING id"),
            {"s": set_id},
        )
        conn.execute(
            text("INSERT INTO run_issues (run_id, issue_id, priority, input_tokens_est, status) "
                 "VALUES (:r, :i, 10, 1, 'maybe')"),
            {"r": run_id, "i": issue},
        )  # fmt: skip

    # And downgrading restores the views as they were and drops the columns
    downgrade(url, "0012")
    with engine.begin() as conn:
        assert {view: columns(conn, view) for view in before} == before
        assert "reuse_key" not in columns(conn, "results")
        assert "reuse_answers" not in columns(conn, "issue_sets")
        conn.execute(text("DELETE FROM issue_sets WHERE id = :s"), {"s": set_id})
    upgrade(url)
    engine.dispose()
