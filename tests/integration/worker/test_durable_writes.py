"""A paid answer is written through a short PostgreSQL outage, once, or dropped after the window.

The outage is simulated at the commit of the transaction that writes the results (SQLAlchemy
events raising what psycopg raises when the server goes away): before the commit (nothing
written), or after it (written, but the worker hears the connection drop and cannot tell).
tests/faults/test_database_unreachable.py cuts a real connection under real worker processes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, Engine, Insert, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from budgetq.settings import Settings
from tests.integration.worker.inline import assert_each_issue_settled_once, make_set, plan_and_drain

pytestmark = pytest.mark.integration


@contextmanager
def broken_commits(table: str, *, times: int, committed: bool) -> Iterator[list[str]]:
    """Break the next ``times`` commits of transactions inserting into ``table``: before the commit
    (rolled back) or, ``committed``, after it; yields the tables whose commits were broken."""
    broken: list[str] = []
    # Per thread: the insert and the commit of one transaction run in the thread that writes it. An
    # engine event, not an ORM one: the worker runs its per-batch statements on the session's connection.
    writing = threading.local()

    def on_execute(conn: Connection, statement: object, *args: object) -> None:
        if isinstance(statement, Insert) and statement.table.name == table:
            writing.table = table

    def on_commit(session: Session) -> None:
        if getattr(writing, "table", None) and len(broken) < times:
            writing.table = None
            broken.append(table)
            raise OperationalError("COMMIT", None, Exception("server closed the connection unexpectedly"))
        writing.table = None

    hook = "after_commit" if committed else "before_commit"
    event.listen(Engine, "before_execute", on_execute)
    event.listen(Session, hook, on_commit)
    try:
        yield broken
    finally:
        event.remove(Session, hook, on_commit)
        event.remove(Engine, "before_execute", on_execute)


def _calls(sessions: sessionmaker[Session], run_id: int) -> list[str]:
    with transaction(sessions) as session:
        rows = session.scalars(text("SELECT status FROM llm_calls WHERE run_id = :r"), {"r": run_id})
        return list(rows)


TEXTS = [f"Issue {i}: the export job fails with a timeout on large projects." for i in range(8)]


def test_a_write_refused_while_the_database_is_down_is_retried_until_it_lands(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given one batch of 8 issues, and a database that drops the first three tries to write its answer
    set_id = make_set(sessions, TEXTS)

    # When the batch is processed
    with broken_commits("results", times=3, committed=False) as broken:
        planned, outcomes = plan_and_drain(sessions, test_settings, set_id)

    # Then the answer was kept and written on the fourth try: once, with one llm_calls row
    assert broken == ["results"] * 3
    assert outcomes == {"succeeded": 1}
    assert planned.run_id is not None
    assert_each_issue_settled_once(sessions, planned.run_id)
    assert _calls(sessions, planned.run_id) == ["ok"]


def test_a_write_whose_commit_went_unanswered_is_not_written_again(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given one batch, and a connection that drops right after PostgreSQL committed its answer
    set_id = make_set(sessions, TEXTS)

    # When the batch is processed
    with broken_commits("results", times=1, committed=True) as broken:
        planned, outcomes = plan_and_drain(sessions, test_settings, set_id)

    # Then the retry found the write in place and wrote nothing twice: one llm_calls row, one result
    # per issue, and the batch reported as it was settled
    assert broken == ["results"]
    assert outcomes == {"succeeded": 1}
    assert planned.run_id is not None
    assert_each_issue_settled_once(sessions, planned.run_id)
    assert _calls(sessions, planned.run_id) == ["ok"]


def test_past_the_write_window_the_answer_is_dropped_and_the_batch_waits_for_its_lease(
    sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    # Given a write window of two seconds, and a database that drops every try to write the answer
    # (half a second failed once in a full-suite run on a busy machine: too tight for the try count)
    settings = test_settings.model_copy(update={"result_write_retry_s": 2.0})
    set_id = make_set(sessions, TEXTS)

    # When the batch is processed
    with broken_commits("results", times=1_000, committed=False) as broken:
        planned, outcomes = plan_and_drain(sessions, settings, set_id)

    # Then the worker gave up after a few tries: no results written, and the batch still holds its
    # lease (the reaper queues it again once the lease expires); the paid call itself stays recorded,
    # closed with its spend reservation before the results were written
    assert 2 <= len(broken) <= 20
    assert outcomes == {"unrecorded": 1}
    assert planned.run_id is not None
    assert _calls(sessions, planned.run_id) == ["ok"]
    with transaction(sessions) as session:
        status = session.scalar(text("SELECT status FROM batches WHERE run_id = :r"), {"r": planned.run_id})
    assert status == "running"
