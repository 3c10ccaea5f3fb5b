"""Migration 0015 gives ``llm_calls`` its reservation and unknown worst case, and the cost views their
``unknown_usd``; downgrading takes them away and restores the views as 0003 made them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade

VIEWS = ("cost_by_day", "cost_by_model", "cost_by_run")


def _columns(conn: object, table: str) -> list[str]:
    query = text(
        "SELECT column_name FROM information_schema.columns WHERE table_name = :t ORDER BY ordinal_position"
    )
    return list(conn.scalars(query, {"t": table}).all())  # type: ignore[attr-defined]


def test_unknown_spend_is_added_to_the_calls_and_views_and_removed(fresh_database: Callable[[], str]) -> None:
    # Given a database at 0014 and its view columns
    url = fresh_database()
    downgrade(url, "0014")
    engine = make_engine(url)
    with engine.begin() as conn:
        before = {v: _columns(conn, v) for v in VIEWS}
        assert "unknown_usd" not in _columns(conn, "llm_calls")

    # When it is upgraded to 0015
    upgrade(url, "0015")

    # Then llm_calls and every cost view gain the new columns, last, and unknown_spend exists
    with engine.begin() as conn:
        assert {"reservation_id", "unknown_usd"} <= set(_columns(conn, "llm_calls"))
        for view in VIEWS:
            assert _columns(conn, view) == [*before[view], "unknown_usd"], view
        assert conn.scalar(text("SELECT count(*) FROM unknown_spend")) == 0

    # And downgrading restores 0014's columns and views exactly
    downgrade(url, "0014")
    with engine.begin() as conn:
        assert {v: _columns(conn, v) for v in VIEWS} == before
        assert "unknown_usd" not in _columns(conn, "llm_calls")
        assert conn.scalar(text("SELECT to_regclass('unknown_spend')")) is None
    upgrade(url)
    engine.dispose()
