"""Migration 0011 adds ``runs.request_key`` (unique) and takes it away again, keeping the runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade

INSERT_RUN = (
    "INSERT INTO runs (set_id, kind, status, mode, model, max_tokens, safe_utilization, context_window, "
    "calibration{key}) VALUES (:s, 'reprocess', 'planned', 'standin', 'm', 100, 0.75, 1000, 1.0{value})"
)


def test_request_keys_are_added_unique_and_removed(fresh_database: Callable[[], str]) -> None:
    # Given a database at 0010 with one run
    url = fresh_database()
    downgrade(url, "0010")
    engine = make_engine(url)
    with engine.begin() as conn:
        set_id = conn.scalar(text("INSERT INTO issue_sets (name) VALUES ('m14') RETURNING id"))
        conn.execute(text(INSERT_RUN.format(key="", value="")), {"s": set_id})

    # When it is upgraded to 0011
    upgrade(url, "0011")

    # Then the old run has no key, a key is accepted once, and a second run with it is refused
    with engine.begin() as conn:
        assert conn.scalar(text("SELECT request_key FROM runs")) is None
        conn.execute(text(INSERT_RUN.format(key=", request_key", value=", 'reprocess:abc'")), {"s": set_id})
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:
        conn.execute(text(INSERT_RUN.format(key=", request_key", value=", 'reprocess:abc'")), {"s": set_id})

    # And downgrading drops the column and keeps both runs
    downgrade(url, "0010")
    with engine.begin() as conn:
        assert conn.scalar(text("SELECT count(*) FROM runs")) == 2
        columns = conn.scalars(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'")
        ).all()
        conn.execute(text("DELETE FROM issue_sets WHERE id = :s"), {"s": set_id})
    assert "request_key" not in columns
    upgrade(url)
    engine.dispose()
