"""Every command's bad input ends in one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import sqlalchemy_url
from tests.integration.conftest import Budgetq, Outcome
from tests.integration.pipeline import make_seed_set


@pytest.fixture
def budgetq(
    run_budgetq: Budgetq, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Budgetq:
    """Run `budgetq ARGS` in this process with ``env``, on an empty data folder and no servers configured."""
    monkeypatch.setenv("BUDGETQ_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    return run_budgetq


def _one_clear_line(outcome: Outcome, *words: str) -> None:
    """Exactly one error line, the last thing printed, with ``words`` in it; no traceback."""
    assert outcome.code != 0, outcome
    errors = [line for line in outcome.error_lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == outcome.error_lines[-1], outcome.stderr
    assert "Traceback" not in outcome.stderr
    line = errors[0]
    for word in words:
        assert word in line, line


@pytest.fixture(scope="module")
def unmigrated_database(server_database_url: str) -> Iterator[str]:
    """An empty database: no budgetq schema."""
    name = f"budgetq_empty_{uuid.uuid4().hex[:8]}"
    admin = make_url(sqlalchemy_url(server_database_url)).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


UNREACHABLE = "postgresql://budgetq:s3cret-pw@127.0.0.1:1/budgetq"
NOT_POSTGRES = "mysql://budgetq:s3cret-pw@db/budgetq"
NO_BROKER = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    "args",
    [
        ("db", "upgrade"),
        ("report", "cost"),
        ("report", "run", "1"),
        ("demo",),
    ],
)
def test_a_database_url_that_is_not_postgresql_is_one_line(budgetq: object, args: tuple[str, ...]) -> None:
    # Given a MySQL URL where a PostgreSQL one belongs
    # When a command that needs the database runs
    outcome = budgetq(*args, BUDGETQ_DATABASE_URL=NOT_POSTGRES, BUDGETQ_REDIS_URL=NO_BROKER)  # type: ignore[operator]

    # Then it says so in one line, without the password
    _one_clear_line(outcome, "not a PostgreSQL URL", "BUDGETQ_DATABASE_URL")
    assert "s3cret-pw" not in outcome.stderr


@pytest.mark.parametrize("args", [("db", "upgrade"), ("report", "cost", "--by", "model"), ("demo",)])
def test_a_database_that_does_not_answer_is_one_line(budgetq: object, args: tuple[str, ...]) -> None:
    # Given a PostgreSQL URL where nothing listens
    # When a command that needs the database runs
    outcome = budgetq(*args, BUDGETQ_DATABASE_URL=UNREACHABLE, BUDGETQ_REDIS_URL=NO_BROKER)  # type: ignore[operator]

    # Then it says it cannot reach PostgreSQL, in one line, without the password
    _one_clear_line(outcome, "cannot reach PostgreSQL")
    assert "s3cret-pw" not in outcome.stderr


@pytest.mark.parametrize("args", [("report", "cost"), ("report", "run", "1")])
def test_a_database_without_the_schema_asks_for_db_upgrade(
    budgetq: object, unmigrated_database: str, args: tuple[str, ...]
) -> None:
    # Given a reachable database that was never migrated
    # When a report is asked of it
    outcome = budgetq(*args, BUDGETQ_DATABASE_URL=unmigrated_database)  # type: ignore[operator]

    # Then one line names the fix
    _one_clear_line(outcome, "budgetq db upgrade")


def test_live_mode_without_an_api_key_is_one_line(budgetq: object) -> None:
    # Given live mode and no ANTHROPIC_API_KEY
    # When the demo is started
    outcome = budgetq("demo", BUDGETQ_MODE="live", BUDGETQ_DATABASE_URL=UNREACHABLE)  # type: ignore[operator]

    # Then it stops before touching any server, in one line naming the variable
    _one_clear_line(outcome, "ANTHROPIC_API_KEY")


def test_an_unknown_run_is_one_line_naming_the_runs_there_are(budgetq: object, database_url: str) -> None:
    # Given a migrated database
    # When a run that does not exist is reported
    outcome = budgetq("report", "run", "987654321", BUDGETQ_DATABASE_URL=database_url)  # type: ignore[operator]

    # Then one line says so
    _one_clear_line(outcome, "no run with id 987654321")


def test_an_unknown_migration_revision_is_one_line(budgetq: object, database_url: str) -> None:
    # Given a migrated database
    # When it is asked to migrate to a revision that does not exist
    outcome = budgetq("db", "upgrade", "nope", BUDGETQ_DATABASE_URL=database_url)  # type: ignore[operator]

    # Then one line names the revision
    _one_clear_line(outcome, "'nope'")


def test_a_day_that_is_not_a_day_is_a_usage_error(budgetq: object, database_url: str) -> None:
    # Given a --since that is not a day
    # When the cost report runs
    outcome = budgetq("report", "cost", "--since", "last tuesday", BUDGETQ_DATABASE_URL=database_url)  # type: ignore[operator]

    # Then typer rejects it with the accepted forms, exit code 2
    assert outcome.code == 2
    assert "YYYY-MM-DD" in outcome.stderr and "Traceback" not in outcome.stderr


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("SELECT nope FROM cost_by_run", ("the query failed", "nope")),
        ("DELETE FROM llm_calls", ("the query failed", "read-only")),
    ],
)
def test_a_query_that_fails_or_writes_is_one_line(
    budgetq: object, database_url: str, sql: str, words: tuple[str, ...]
) -> None:
    # Given a migrated database
    # When `budgetq db query` is given a query that fails, or one that would write
    outcome = budgetq("db", "query", sql, BUDGETQ_DATABASE_URL=database_url)  # type: ignore[operator]

    # Then PostgreSQL's reason is one line, and nothing was written
    _one_clear_line(outcome, *words)


UNKNOWN_SET = "no-such-set-" + uuid.uuid4().hex[:6]


@pytest.mark.parametrize(
    "args",
    [
        ("plan", UNKNOWN_SET),
        ("run", UNKNOWN_SET, "--no-wait"),
        ("reprocess", UNKNOWN_SET, "--failed-only", "--no-wait"),
    ],
)
def test_an_unknown_issue_set_is_one_line(budgetq: object, database_url: str, args: tuple[str, ...]) -> None:
    # Given a migrated database without that set, and a configured broker (nothing is sent)
    # When a command is asked to plan it
    outcome = budgetq(*args, BUDGETQ_DATABASE_URL=database_url, BUDGETQ_REDIS_URL=NO_BROKER)  # type: ignore[operator]

    # Then one line names the set
    _one_clear_line(outcome, UNKNOWN_SET)


def test_a_file_that_cannot_be_read_is_one_line(budgetq: object, database_url: str, tmp_path: Path) -> None:
    # Given a path where there is no file
    missing = tmp_path / "issues.csv"

    # When it is loaded
    outcome = budgetq("load", str(missing), "--set", "anything", BUDGETQ_DATABASE_URL=database_url)  # type: ignore[operator]

    # Then one line names the file
    _one_clear_line(outcome, str(missing))


@pytest.mark.parametrize(
    "args",
    [
        ("load", "issues.csv", "--set", "s"),
        ("plan", "s"),
        ("run", "s"),
        ("reprocess", "s"),
    ],
)
def test_the_other_commands_report_a_bad_database_url_in_one_line(
    budgetq: object, args: tuple[str, ...]
) -> None:
    # Given a URL that is not PostgreSQL's
    # When a command that needs the database runs
    outcome = budgetq(*args, BUDGETQ_DATABASE_URL=NOT_POSTGRES, BUDGETQ_REDIS_URL=NO_BROKER)  # type: ignore[operator]

    # Then one line says so, without the password
    _one_clear_line(outcome, "not a PostgreSQL URL")
    assert "s3cret-pw" not in outcome.stderr


@pytest.mark.parametrize("args", [("run", "s"), ("reprocess", "s", "--failed-only")])
def test_a_run_with_a_local_worker_in_live_mode_without_a_key_is_one_line(
    budgetq: object, args: tuple[str, ...]
) -> None:
    # Given live mode, no ANTHROPIC_API_KEY and no broker of our own (so a local worker would call)
    # When a run is started
    outcome = budgetq(*args, BUDGETQ_MODE="live", BUDGETQ_DATABASE_URL=UNREACHABLE)  # type: ignore[operator]

    # Then it stops before starting anything, in one line naming the variable
    _one_clear_line(outcome, "ANTHROPIC_API_KEY")


def test_a_selection_that_is_not_issue_ids_is_one_line(
    budgetq: object, database_url: str, sessions: sessionmaker[Session]
) -> None:
    # Given a set, and --issues naming one issue that is neither an external nor an internal id of it
    # (issue 14: --issues takes external ids too, so a text that is not a number is no longer refused as such)
    name = f"sel-{uuid.uuid4().hex[:8]}"
    make_seed_set(sessions, name, 3)
    # When a reprocess is asked for
    outcome = budgetq("reprocess", name, "--issues", "dq-00001,abc", BUDGETQ_DATABASE_URL=database_url)  # type: ignore[operator]

    # Then one line says what is wrong
    _one_clear_line(outcome, "abc", "not in set")


def test_a_broker_that_does_not_answer_is_one_line(
    budgetq: object, database_url: str, sessions: sessionmaker[Session]
) -> None:
    # Given a small issue set and a broker URL where nothing listens
    name = f"broker-down-{uuid.uuid4().hex[:6]}"
    make_seed_set(sessions, name, 5)

    # When a run of it is started
    outcome = budgetq(
        "run", name, "--no-wait", BUDGETQ_DATABASE_URL=database_url, BUDGETQ_REDIS_URL=NO_BROKER
    )  # type: ignore[operator]

    # Then one line says the broker cannot be reached (the reaper sends the planned batches once it can)
    _one_clear_line(outcome, "broker")
