"""Fixtures of the worker's integration tests: a database of one's own, a stand-in configured per test."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import make_engine, make_sessions, transaction
from budgetq.adapters.store.message_batch_models import MessageBatch
from budgetq.devtools.standin.server import StandIn, StandInConfig
from budgetq.domain.statuses import MessageBatchStatus

_LIVE = (MessageBatchStatus.SUBMITTING, MessageBatchStatus.IN_PROGRESS, MessageBatchStatus.INGESTING)


@pytest.fixture(autouse=True)
def no_message_batches_of_earlier_tests(sessions: sessionmaker[Session]) -> None:
    """Each test has its own stand-in but shares the database, and the poll task takes every live
    Message Batch in it: one an earlier test left live would be resubmitted to this test's stand-in
    (seen in CI: its call warmed the prompt cache a cost test measured). They are closed first."""
    with transaction(sessions) as session:
        session.execute(
            update(MessageBatch)
            .where(MessageBatch.status.in_([s.value for s in _LIVE]))
            .values(status=MessageBatchStatus.ABANDONED.value)
        )


@dataclass(frozen=True)
class OwnDatabase:
    """A fresh, migrated database: its URL and a session factory on it."""

    url: str
    sessions: sessionmaker[Session]


@pytest.fixture
def own_database(fresh_database: Callable[[], str]) -> Iterator[OwnDatabase]:
    """A database no other test writes to, for tests whose provenance must not mix with others'
    (the calibration is learned per model from every run in a database)."""
    url = fresh_database()
    engine = make_engine(url, pool_size=4)
    yield OwnDatabase(url, make_sessions(engine))
    engine.dispose()


@pytest.fixture
def own_start_worker(
    start_worker: Callable[..., subprocess.Popen[bytes]], own_database: OwnDatabase
) -> Callable[..., subprocess.Popen[bytes]]:
    """Start workers on the test's own database (unless the test names another)."""

    def start(concurrency: int = 2, **env: str) -> subprocess.Popen[bytes]:
        return start_worker(concurrency, **{"BUDGETQ_DATABASE_URL": own_database.url, **env})

    return start


@pytest.fixture
def make_standin() -> Iterator[Callable[..., StandIn]]:
    """Start stand-ins with a given configuration; all stop at teardown."""
    started: list[StandIn] = []

    def make(**config: object) -> StandIn:
        server = StandIn(StandInConfig(**config))  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
