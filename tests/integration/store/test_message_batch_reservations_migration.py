"""Migration 0008 (a Message Batch request's spend reservation) goes up and down cleanly."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, inspect

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade


def _columns(engine: Engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("message_batch_requests")}


def test_a_request_s_reservation_column_comes_with_0008_and_goes_with_its_downgrade(
    fresh_database: Callable[[], str],
) -> None:
    # Given a database migrated to the head: requests name their spend reservation, by foreign key
    url = fresh_database()
    engine = make_engine(url)
    assert "spend_reservation_id" in _columns(engine)
    keys = inspect(engine).get_foreign_keys("message_batch_requests")
    assert any(k["referred_table"] == "spend_reservations" for k in keys)
    engine.dispose()

    # When it is downgraded below 0008, the column is gone; upgraded again, it is back
    downgrade(url, "0007")
    assert "spend_reservation_id" not in _columns(engine)
    engine.dispose()
    upgrade(url)
    assert "spend_reservation_id" in _columns(engine)
    engine.dispose()
