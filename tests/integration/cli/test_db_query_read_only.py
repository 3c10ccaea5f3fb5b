"""`budgetq db query` cannot write, whatever the text does to the transaction (issue 17, point 15)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import make_engine, make_sessions
from budgetq.adapters.store.models import Issue as IssueRow
from tests.integration.conftest import Budgetq
from tests.integration.pipeline import make_seed_set

WRITES = [
    "COMMIT; DELETE FROM issues",
    "commit;delete from issues",
    "ROLLBACK; DELETE FROM issues",
    "END; DELETE FROM issues",
    "COMMIT; BEGIN; DELETE FROM issues; COMMIT",
    "COMMIT; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; DELETE FROM issues",
    "SET TRANSACTION READ WRITE; DELETE FROM issues",
    "COMMIT; SET default_transaction_read_only = off; DELETE FROM issues",
    "SELECT 1; COMMIT; DELETE FROM issues",
    "WITH gone AS (DELETE FROM issues RETURNING 1) SELECT count(*) FROM gone",
    "COMMIT; TRUNCATE issues CASCADE",
    "COMMIT; DROP TABLE issues CASCADE",
]


@pytest.fixture(scope="module")
def seeded(fresh_database: Callable[[], str]) -> Iterator[tuple[str, sessionmaker[Session]]]:
    """A database of its own (these statements would empty a shared one) holding 5 issues."""
    url = fresh_database()
    engine = make_engine(url)
    sessions = make_sessions(engine)
    make_seed_set(sessions, "read-only", 5)
    yield url, sessions
    engine.dispose()  # before the session's end drops the database under it


def _issues(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(IssueRow)) or 0)


@pytest.mark.parametrize("sql", WRITES)
def test_a_query_that_ends_the_read_only_transaction_writes_nothing(
    run_budgetq: Budgetq, seeded: tuple[str, sessionmaker[Session]], sql: str
) -> None:
    # Given a database with 5 issues
    url, sessions = seeded
    # When `budgetq db query` is given statements that try to escape the read-only transaction
    outcome = run_budgetq("db", "query", sql, BUDGETQ_DATABASE_URL=url)

    # Then it refuses in one line, exit 2, and every issue is still there
    outcome.one_error_line("the query failed")
    assert outcome.code == 2
    assert _issues(sessions) == 5


def test_a_query_that_runs_too_long_is_stopped_in_one_line(
    run_budgetq: Budgetq, seeded: tuple[str, sessionmaker[Session]]
) -> None:
    # Given a statement timeout of one second
    url, _ = seeded
    # When a query sleeps for a minute
    outcome = run_budgetq(
        "db", "query", "SELECT pg_sleep(60)", BUDGETQ_DATABASE_URL=url, BUDGETQ_QUERY_TIMEOUT_S="1"
    )

    # Then PostgreSQL cancels it and one line says so
    outcome.one_error_line("the query failed", "statement timeout")


def test_a_plain_select_still_answers(
    run_budgetq: Budgetq, seeded: tuple[str, sessionmaker[Session]]
) -> None:
    # Given the seeded database
    url, _ = seeded
    # When a plain SELECT runs
    outcome = run_budgetq(
        "db", "query", "SELECT count(*) AS n FROM issues", "--format", "csv", BUDGETQ_DATABASE_URL=url
    )

    # Then it answers
    assert outcome.code == 0, outcome
    assert outcome.stdout.splitlines()[-1] == "5"
