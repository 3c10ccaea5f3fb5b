"""The cost views after a real run: every attempt is priced, and the per-issue shares add up exactly."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store.engine import make_engine, make_sessions, transaction
from budgetq.cli import app
from budgetq.devtools.standin.faults import FaultPlan
from budgetq.devtools.standin.server import StandIn, StandInConfig
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set, wait_for_run

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class FinishedRun:
    """A finished run alone in its own database."""

    url: str
    sessions: sessionmaker[Session]
    run_id: int


@pytest.fixture(scope="module")
def finished_run(
    fresh_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FinishedRun]:
    """One run of 250 seed issues, shared by this module's tests, alone in its own database (so every
    view holds it and nothing else): its first two calls are overloaded (529), some answers malformed."""
    url = fresh_database()
    engine = make_engine(url)
    sessions = make_sessions(engine)
    redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://")).flushdb()
    standin = StandIn(
        StandInConfig(faults=FaultPlan(fail_first_n=2, p_malformed=0.15, retry_after_range=(0, 0)))
    )
    env = {
        "BUDGETQ_DATABASE_URL": url,
        "BUDGETQ_REDIS_URL": redis_url,
        "BUDGETQ_MODE": "standin",
        "ANTHROPIC_BASE_URL": standin.start(),
        "BUDGETQ_RETRY_BASE_S": "0.05",
        "BUDGETQ_MAX_ISSUES_PER_CALL": "60",
    }
    worker = processes.start_worker(env, 2, tmp_path_factory.mktemp("views") / "worker.log")
    try:
        settings = Settings(
            **{k[len("BUDGETQ_") :].lower(): v for k, v in env.items() if k.startswith("BUDGETQ_")}
        )
        set_id = make_seed_set(sessions, f"views-{uuid.uuid4().hex[:8]}", 250)
        planned = plan_run(sessions, settings, set_id, kind="manual")
        assert planned.run_id is not None
        enqueue(make_celery(settings, redis_url), sessions, planned.batch_ids)
        wait_for_run(sessions, planned.run_id)
        yield FinishedRun(url, sessions, planned.run_id)
    finally:
        processes.stop(worker, timeout=10)
        standin.stop()
        engine.dispose()


def _scalar(sessions: sessionmaker[Session], sql: str, **params: object) -> Any:
    with transaction(sessions) as session:
        return session.execute(text(sql), params).scalar_one()


def test_each_calls_cost_is_shared_across_its_issues_exactly(
    finished_run: FinishedRun,
) -> None:
    # Given a finished run with failed attempts and retries
    sessions, run_id = finished_run.sessions, finished_run.run_id

    # When each attempt's per-issue shares are added up
    with transaction(sessions) as session:
        mismatches = session.execute(
            text(
                "SELECT c.id, c.cost_usd, sum(ic.cost_micro_usd) AS shared, count(ic.issue_id) AS issues "
                "FROM llm_calls c LEFT JOIN issue_costs ic ON ic.llm_call_id = c.id "
                "WHERE c.run_id = :run GROUP BY c.id, c.cost_usd "
                "HAVING count(ic.issue_id) = 0 OR sum(ic.cost_micro_usd) <> c.cost_usd * 1000000"
            ),
            {"run": run_id},
        ).all()
        calls = session.execute(
            text("SELECT count(*), sum(cost_usd) FROM llm_calls WHERE run_id = :run"), {"run": run_id}
        ).one()

    # Then every attempt's shares add up to its cost to the micro-dollar, and so does the run's total
    assert calls[0] > 0 and calls[1] > 0
    assert mismatches == []
    per_issue = _scalar(sessions, "SELECT sum(cost_usd) FROM cost_by_issue WHERE run_id = :run", run=run_id)
    assert per_issue == calls[1]
    per_priority = _scalar(sessions, "SELECT sum(cost_usd) FROM cost_by_priority")
    assert per_priority == calls[1]


def test_the_views_agree_with_the_calls_and_count_failed_attempts(
    finished_run: FinishedRun,
) -> None:
    # Given a finished run whose first two attempts were overloaded
    sessions, run_id = finished_run.sessions, finished_run.run_id

    # When the run is read from its views
    with transaction(sessions) as session:
        run = session.execute(text("SELECT * FROM cost_by_run WHERE run_id = :run"), {"run": run_id}).one()
        truth = session.execute(
            text(
                "SELECT count(*) AS attempts, count(*) FILTER (WHERE status <> 'ok') AS failed, "
                "sum(cost_usd) AS cost, sum(billed_input_tokens) AS billed, sum(output_tokens) AS output "
                "FROM llm_calls WHERE run_id = :run"
            ),
            {"run": run_id},
        ).one()
        totals = {
            view: session.execute(text(f"SELECT sum(cost_usd), sum(attempts) FROM {view}")).one()
            for view in ("cost_by_day", "cost_by_model", "cost_by_set")
        }
        outcomes = session.execute(
            text("SELECT status, sum(attempts) FROM attempts_by_outcome WHERE run_id = :run GROUP BY status"),
            {"run": run_id},
        ).all()
        honesty = session.execute(
            text(
                "SELECT sum(calls), sum(billed_input_tokens), sum(over_guard_calls) FROM calibration_by_model"
            )
        ).one()

    # Then the run's row matches its llm_calls, failed attempts and retries included
    assert run.attempts == truth.attempts and run.failed_attempts == truth.failed >= 2
    assert run.retries >= 2
    assert run.cost_usd == truth.cost and run.billed_input_tokens == truth.billed
    # And stand-in calls are priced but not billed
    assert run.would_have_cost_usd == truth.cost and run.billed_cost_usd == 0
    # And every grouping adds up to the same total
    for view, (cost, attempts) in totals.items():
        assert (cost, attempts) == (truth.cost, truth.attempts), view
    assert dict(outcomes).get("retryable_error", 0) >= 2
    assert sum(n for _, n in outcomes) == truth.attempts
    # And guard honesty covers every answered attempt, none over the guard
    assert honesty[1] == truth.billed and honesty[2] == 0
    assert 0 < run.utilization_min <= run.utilization_median <= run.utilization_p95 <= run.utilization_max


def _report(*args: str) -> Any:
    """What `budgetq ARGS --format json` prints, parsed."""
    import budgetq.cli.report  # noqa: F401 - registers `budgetq report`

    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _same(a: object, b: object) -> bool:
    """Equal as figures (39 == "39" == Decimal("39.000000")), as days (date == ISO text), or as they are."""
    a, b = (v.isoformat() if isinstance(v, dt.date) else v for v in (a, b))
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except ArithmeticError:
        return a == b


def readme_cost_queries() -> list[tuple[list[str], str]]:
    """The SQL blocks of the "Example queries" section of docs/cost-reporting.md, each with the
    `budgetq` command its first line names (``-- budgetq report ...``), if any."""
    readme = (ROOT / "docs" / "cost-reporting.md").read_text()
    section = readme.split("## Example queries", 1)[1].split("\n## ", 1)[0]
    out = []
    for block in re.findall(r"```sql\n(.*?)```", section, flags=re.S):
        first = block.splitlines()[0]
        command = shlex.split(first[len("-- ") :]) if first.startswith("-- budgetq ") else []
        out.append((command[1:], block))
    return out


def test_budgetq_report_prints_the_numbers_of_the_views(
    finished_run: FinishedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a finished run in its own database
    monkeypatch.setenv("BUDGETQ_DATABASE_URL", finished_run.url)
    total = _scalar(finished_run.sessions, "SELECT sum(cost_usd) FROM llm_calls")

    # When `budgetq report` prints each grouping and the run as JSON
    by = {d: _report("report", "cost", "--by", d) for d in ("day", "run", "set", "model", "priority")}
    run = _report("report", "run", str(finished_run.run_id))["run"]

    # Then each grouping's costs add up to the calls' total, to the micro-dollar
    for dimension, rows in by.items():
        assert sum(Decimal(r["cost_usd"]) for r in rows) == total, dimension
    assert Decimal(run["cost_usd"]) == total
    assert run["attempts"] == _scalar(finished_run.sessions, "SELECT count(*) FROM llm_calls")
    assert by["run"][0]["run_id"] == finished_run.run_id
    assert by["run"][0]["failed_attempts"] == run["failed_attempts"] > 0


def test_the_readme_cost_queries_run_and_return_what_budgetq_report_prints(
    finished_run: FinishedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a finished run, and the documented cost queries
    monkeypatch.setenv("BUDGETQ_DATABASE_URL", finished_run.url)
    queries = readme_cost_queries()
    assert len(queries) >= 6 and sum(1 for command, _ in queries if command) >= 4

    for command, sql in queries:
        # When each query runs
        with transaction(finished_run.sessions) as session:
            rows = [dict(r) for r in session.execute(text(sql)).mappings()]
        assert rows, sql
        if not command:
            continue
        # Then it returns the figures of the `budgetq` command its first line names
        if command[:2] == ["report", "run"]:
            shown = [_report("report", "run", str(rows[0]["run_id"]))["run"]]
        else:
            shown = _report(*command)
        assert len(shown) >= len(rows), command
        for row, printed in zip(rows, shown, strict=False):
            common = set(row) & set(printed)
            assert len(common) >= 3, (command, sorted(row))
            assert all(_same(row[k], printed[k]) for k in common), (command, row, printed)


def test_db_query_reads_a_commented_query_from_stdin(
    finished_run: FinishedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a finished run, and a query file that starts with a comment line (as the documented ones do)
    monkeypatch.setenv("BUDGETQ_DATABASE_URL", finished_run.url)
    import budgetq.cli.db  # noqa: F401 - registers `budgetq db`

    # When it is piped into `budgetq db query`
    sql = "-- budgetq report run RUN\nSELECT run_id, attempts FROM cost_by_run"
    result = CliRunner().invoke(app, ["db", "query", "--format", "json"], input=sql)

    # Then its rows come back
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows == [
        {
            "run_id": finished_run.run_id,
            "attempts": _scalar(finished_run.sessions, "SELECT count(*) FROM llm_calls"),
        }
    ]
