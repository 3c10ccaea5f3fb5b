"""A database clock a test can set: ``now()`` answered by a function placed before pg_catalog on the
connection's search_path, reading a transaction-local setting (the real clock when unset).

The code under test is unchanged: every ``now()`` it sends (today's day, settled_at) reads this clock.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import make_engine, make_sessions, transaction

CLOCK = """
CREATE OR REPLACE FUNCTION test_clock.now() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('test_clock.at', true), '')::timestamptz, pg_catalog.now())
$$
"""


def clocked_engine(database_url: str, pool_size: int = 4) -> Engine:
    """An engine whose connections read ``now()`` from the test clock."""
    engine = make_engine(database_url, pool_size=pool_size)

    # Registered before the first connection, so every pooled connection has it.
    @event.listens_for(engine, "connect")
    def _search_path(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET search_path = test_clock, pg_catalog, public")
        dbapi_connection.commit()

    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA IF NOT EXISTS test_clock"))
        connection.execute(text(CLOCK))
    return engine


def unused_day() -> dt.date:
    """A day far from today that no other test uses (its daily_spend row is the test's own)."""
    return dt.date(2300, 1, 1) + dt.timedelta(days=random.randrange(200_000))


@contextmanager
def at(sessions: sessionmaker[Session], when: dt.datetime) -> Iterator[Session]:
    """One transaction in which the database's ``now()`` is ``when``."""
    with transaction(sessions) as session:
        session.execute(text("SELECT set_config('test_clock.at', :at, true)"), {"at": when.isoformat()})
        yield session


def clocked_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions on a clocked engine."""
    return make_sessions(engine)
