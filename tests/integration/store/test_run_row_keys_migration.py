"""Migration 0018: the rows written per call no longer lock the run's row through their foreign keys,
and still cannot name a run, batch or issue they do not belong to; downgrading restores the old keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from budgetq.adapters.store.engine import downgrade, make_engine, make_sessions, upgrade
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set

pytestmark = pytest.mark.integration

CALL = (
    "INSERT INTO llm_calls (run_id, batch_id, attempt, model, mode, request_id, status, "
    "estimated_input_tokens, input_tokens, output_tokens, max_tokens, context_window, cost_usd, "
    "started_at, finished_at) VALUES (%(run)s, %(batch)s, 1, 'm', 'live', 'req', 'ok', 10, 10, 10, 100, "
    "1000, 0.01, now(), now()) RETURNING id"
)
RESERVATION = (
    "INSERT INTO spend_reservations (run_id, batch_id, day, amount_usd, status) "
    "VALUES (%(run)s, %(batch)s, current_date, 0.02, 'held')"
)
RESULT = (
    "INSERT INTO results (run_id, issue_id, batch_id, llm_call_id, category, diagnosis, proposed_fix, "
    "confidence) VALUES (%(run)s, %(issue)s, %(batch)s, %(call)s, 'c', 'd', 'f', 0.5)"
)


def _planned(url: str, settings: Settings) -> tuple[int, int, int]:
    """A run of one batch on ``url``: (run id, batch id, one of its issues)."""
    engine = make_engine(url)
    sessions = make_sessions(engine)
    set_id = make_seed_set(sessions, f"keys-{uuid.uuid4().hex[:8]}", 3)
    planned = plan_run(sessions, settings.model_copy(update={"database_url": url}), set_id, kind="manual")
    assert planned.run_id is not None
    with engine.begin() as conn:
        issue = conn.scalar(
            text("SELECT issue_id FROM run_issues WHERE run_id = :r LIMIT 1"), {"r": planned.run_id}
        )
        conn.execute(text("INSERT INTO daily_spend (day) VALUES (current_date) ON CONFLICT DO NOTHING"))
    engine.dispose()
    return planned.run_id, planned.batch_ids[0], int(issue)


def _writes_while_the_run_row_is_locked(url: str, run: int, batch: int, issue: int) -> str | None:
    """Lock the run's row FOR UPDATE in one connection and write a call's rows in another; the error
    of the writer (None when it was not held up)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn) as writer:
        holder.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run,))
        writer.execute("SET lock_timeout = '2s'")
        try:
            row = writer.execute(CALL, {"run": run, "batch": batch}).fetchone()
            assert row is not None
            writer.execute(RESERVATION, {"run": run, "batch": batch})
            writer.execute(RESULT, {"run": run, "issue": issue, "batch": batch, "call": row[0]})
        except psycopg.errors.LockNotAvailable as exc:
            return str(exc).splitlines()[0]
        finally:
            writer.rollback()
            holder.rollback()
    return None


def test_a_calls_rows_are_written_while_the_run_row_is_locked_and_keep_their_keys(
    fresh_database: Callable[[], str], test_settings: Settings
) -> None:
    # Given a database at 0017 (every per-call row keyed to runs) and a planned run
    url = fresh_database()
    downgrade(url, "0017")
    run, batch, issue = _planned(url, test_settings)

    # Then a call's rows wait for whoever holds the run's row
    assert _writes_while_the_run_row_is_locked(url, run, batch, issue) == (
        "canceling statement due to lock timeout"
    )

    # When it is upgraded to 0018
    upgrade(url, "0018")

    # Then they are written while the run's row is locked
    assert _writes_while_the_run_row_is_locked(url, run, batch, issue) is None

    # And a row that names another run's batch, or an issue outside its run, is refused
    other_run, other_batch, _ = _planned(url, test_settings)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="llm_calls_batch_run_fkey"):
            conn.execute(CALL, {"run": run, "batch": other_batch})
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="spend_reservations_batch_run_fkey"):
            conn.execute(RESERVATION, {"run": other_run, "batch": batch})
        conn.rollback()
        call = conn.execute(CALL, {"run": run, "batch": batch}).fetchone()
        assert call is not None
        outside = conn.execute(
            "SELECT issue_id FROM run_issues WHERE run_id = %s AND issue_id NOT IN "
            "(SELECT issue_id FROM run_issues WHERE run_id = %s) LIMIT 1",
            (other_run, run),
        ).fetchone()
        assert outside is not None
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="results_run_issue_fkey"):
            conn.execute(RESULT, {"run": run, "issue": outside[0], "batch": batch, "call": call[0]})
        conn.rollback()

    # And downgrading restores the keys on runs (the writes wait again), and upgrading works again
    downgrade(url, "0017")
    assert _writes_while_the_run_row_is_locked(url, run, batch, issue) is not None
    upgrade(url)
