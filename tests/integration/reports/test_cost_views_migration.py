"""Migration 0003 (the cost views) goes down and up again cleanly."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade

VIEWS = {
    "call_costs",
    "cost_by_day",
    "cost_by_model",
    "cost_by_set",
    "cost_by_run",
    "issue_costs",
    "cost_by_issue",
    "cost_by_priority",
    "attempts_by_outcome",
    "guard_honesty",
    "calibration_by_model",
}


def _views(url: str) -> set[str]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(text("SELECT viewname FROM pg_views WHERE schemaname = 'public'")))
    finally:
        engine.dispose()


def test_the_cost_views_migration_goes_down_and_up(fresh_database: Callable[[], str]) -> None:
    # Given a database at the newest schema
    url = fresh_database()
    assert VIEWS <= _views(url)

    # When it goes back below 0003, then up again
    downgrade(url, "0002")
    without = _views(url)
    upgrade(url, "head")

    # Then the views were gone, and are back
    assert not VIEWS & without
    assert VIEWS <= _views(url)
