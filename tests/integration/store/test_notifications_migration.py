"""Migration 0012 adds the notifications outbox (an event once per key) and takes it away again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade

INSERT = "INSERT INTO notifications (kind, dedupe_key, payload) VALUES ('run_ended', :k, '{}') RETURNING id"


def test_the_outbox_is_added_unique_per_event_and_removed(fresh_database: Callable[[], str]) -> None:
    # Given a database at 0011, upgraded to 0012
    url = fresh_database()
    downgrade(url, "0011")
    upgrade(url, "0012")
    engine = make_engine(url)

    # Then an event is written once per key, with a delivery per target
    with engine.begin() as conn:
        notification = conn.scalar(text(INSERT), {"k": "run_ended:1"})
        conn.execute(
            text(
                "INSERT INTO notification_deliveries (notification_id, target, status) "
                "VALUES (:n, 'ab', 'pending')"
            ),
            {"n": notification},
        )
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:
        conn.execute(text(INSERT), {"k": "run_ended:1"})

    # And downgrading drops both tables
    downgrade(url, "0011")
    with engine.begin() as conn:
        tables = set(
            conn.scalars(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            )
        )
    assert not tables & {"notifications", "notification_deliveries"}
    upgrade(url)
    engine.dispose()
