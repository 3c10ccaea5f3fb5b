"""`budgetq load`, `plan`, `run` and `reprocess` as a user runs them: output, exit codes, clear errors."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from budgetq.adapters.queue.celery_app import PROCESS_BATCH, SUBMIT_MESSAGE_BATCHES
from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.models import Batch, Issue, IssueSet, Run
from budgetq.cli import app
from tests.integration.conftest import Budgetq

GOOD = "external_id,priority,text\n" + "".join(
    f"c-{i},{(15, 10, 5, 1)[i % 4]},table t{i} has {i} null keys after the nightly load\n" for i in range(60)
)


@pytest.fixture
def budgetq(
    run_budgetq: Budgetq,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    broker_url: str,
    tmp_path: Path,
) -> Budgetq:
    """Run `budgetq ARGS` in this process with ``env``, on the test servers in stand-in mode."""
    monkeypatch.setenv("BUDGETQ_DATABASE_URL", database_url)
    monkeypatch.setenv("BUDGETQ_REDIS_URL", broker_url)
    monkeypatch.setenv("BUDGETQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUDGETQ_MODE", "standin")
    return run_budgetq


@pytest.fixture
def loaded_set(budgetq: Budgetq, tmp_path: Path) -> str:
    """The name of a set of 60 issues loaded through `budgetq load`."""
    path = tmp_path / "good.csv"
    path.write_text(GOOD, encoding="utf-8")
    name = f"cli-{uuid.uuid4().hex[:8]}"
    outcome = budgetq("load", str(path), "--set", name)
    assert outcome.code == 0 and f"loaded 60 issues into '{name}' (new set" in outcome.stdout, outcome
    return name


def test_plan_dry_run_shows_batches_bound_utilization_and_cost_and_writes_no_run(
    budgetq: Budgetq, loaded_set: str, sessions: sessionmaker[Session]
) -> None:
    # When the loaded set is planned as a dry run, in words and as JSON
    words = budgetq("plan", loaded_set, "--dry-run")
    as_json = budgetq("plan", loaded_set, "--dry-run", "--json", "--spend-cap", "0.05")

    # Then the plan is described: batches against the lower bound, utilization, expected cost
    assert words.code == 0, words
    assert "60 issues → 1 batches (lower bound 1); 0 oversize, 0 deferred" in words.stdout
    assert "utilization of the window per call" in words.stdout and "min " in words.stdout
    assert "estimated cost $" in words.stdout
    summary = json.loads(as_json.stdout)
    assert summary["issues"] == 60 and summary["batches"] + summary["deferred"] > 0
    assert summary["deferred"] > 0 and float(summary["estimated_cost_usd"]) <= 0.05
    # And no run was written
    with transaction(sessions) as session:
        runs = session.scalar(
            select(func.count()).select_from(Run).join(IssueSet).where(IssueSet.name == loaded_set)
        )
    assert runs == 0


def test_a_file_with_bad_rows_loads_the_good_ones_lists_the_bad_and_exits_1(
    budgetq: Budgetq, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    # Given a file with two bad rows among good ones
    path = tmp_path / "mixed.csv"
    path.write_text("priority,text\n10,fine\n11,bad priority\n5,also fine\n1,\n", encoding="utf-8")
    name = f"mixed-{uuid.uuid4().hex[:8]}"

    # When it is loaded, then loaded strictly into another set
    outcome = budgetq("load", str(path), "--set", name)
    strict = budgetq("load", str(path), "--set", name + "-strict", "--strict")

    # Then the table names each bad line and why, the good rows load, and both exit 1
    assert outcome.code == 1
    assert "2 rejected rows" in outcome.stdout
    assert (
        "priority 11 is not allowed" in outcome.stdout
        and "text is empty or whitespace only" in outcome.stdout
    )
    assert f"loaded 2 issues into '{name}'" in outcome.stdout
    strict.one_error_line("--strict: 2 rows rejected, so nothing was loaded")
    assert strict.code == 1
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).where(IssueSet.name == name + "-strict")) == 0
        assert (
            session.scalar(
                select(func.count()).select_from(Issue).join(IssueSet).where(IssueSet.name == name)
            )
            == 2
        )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("id,body\n1,x\n", ("lacks the column(s) priority, text",)),
        (None, ("cannot read", "No such file")),
    ],
)
def test_a_file_that_cannot_be_loaded_is_one_clear_line_and_exit_2(
    budgetq: Budgetq, tmp_path: Path, content: str | None, words: tuple[str, ...]
) -> None:
    path = tmp_path / "issues.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    outcome = budgetq("load", str(path), "--set", "never")
    outcome.one_error_line(*words)
    assert outcome.code == 2


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "no-such-set", "--dry-run"),
        ("run", "no-such-set", "--no-wait"),
        ("reprocess", "no-such-set", "--failed-only", "--no-wait"),
    ],
)
def test_an_unknown_set_is_one_clear_line(budgetq: Budgetq, args: tuple[str, ...]) -> None:
    budgetq(*args).one_error_line("no issue set named 'no-such-set'", "known sets")


def test_reprocess_with_two_selectors_is_one_clear_line(budgetq: Budgetq, loaded_set: str) -> None:
    outcome = budgetq("reprocess", loaded_set, "--failed-only", "--priority", "5", "--no-wait")
    outcome.one_error_line("choose one of --failed-only, --issues and --priority")


def test_run_without_waiting_plans_and_enqueues_the_set(
    budgetq: Budgetq, loaded_set: str, sessions: sessionmaker[Session], broker_url: str
) -> None:
    # When the set is run without waiting, against a broker of its own
    outcome = budgetq("run", loaded_set, "--no-wait")

    # Then a run was planned and its batch is in the llm queue
    assert outcome.code == 0, outcome
    assert "60 issues in 1 batches (lower bound 1)" in outcome.stdout
    with transaction(sessions) as session:
        run = session.scalars(select(Run).join(IssueSet).where(IssueSet.name == loaded_set)).one()
        unsent = session.scalar(
            select(func.count()).where(Batch.run_id == run.id, Batch.enqueued_at.is_(None))
        )
    assert run.kind == "manual" and unsent == 0
    assert redis.Redis.from_url(broker_url.replace("redis+socket://", "unix://")).llen("llm") == 1


def test_run_exits_1_when_the_run_ends_with_failures(
    budgetq: Budgetq, loaded_set: str, tmp_path: Path
) -> None:
    # Given calls that can only fail: replay mode with no recorded answers, one failure per batch allowed
    env = {
        "BUDGETQ_MODE": "replay",
        "BUDGETQ_CASSETTE_DIR": str(tmp_path / "no-cassettes"),
        "BUDGETQ_BATCH_MAX_FAILURES": "1",
        "BUDGETQ_MAX_ISSUES_PER_CALL": "30",
    }

    # When the set is run with a local worker, waiting for the end
    outcome = budgetq("run", loaded_set, "--workers", "2", "--timeout", "90", **env)

    # Then the run ends failed, and the command says so and exits 1
    assert outcome.code == 1, outcome
    assert "failed 60" in outcome.stdout and " failed:" in outcome.stdout


def _invoke(*args: str) -> Any:
    """`budgetq ARGS` through typer's CliRunner, in the environment the ``budgetq`` fixture set up."""
    from budgetq.cli import runs  # noqa: F401 - importing the module registers its commands

    return CliRunner().invoke(app, list(args))


def _queued_tasks(broker_url: str) -> list[str]:
    """The task names of the messages waiting in the broker's llm queue."""
    client = redis.Redis.from_url(broker_url.replace("redis+socket://", "unix://"))
    return [json.loads(m)["headers"]["task"] for m in client.lrange("llm", 0, -1)]


def test_plan_prices_a_batch_api_run_at_the_batch_rate(budgetq: Budgetq, loaded_set: str) -> None:
    # When the set is planned as it is (its default mode), in sync mode and in batch-api mode
    default, sync, batch = (
        _invoke("plan", loaded_set, "--dry-run", "--json", *mode)
        for mode in ((), ("--api-mode", "sync"), ("--api-mode", "batch-api"))
    )

    # Then each says its mode, and the batch-api plan costs about half (the batch rate, with a 1-hour
    # cache write for the first request)
    assert (default.exit_code, sync.exit_code, batch.exit_code) == (0, 0, 0), (sync.output, batch.output)
    plans = [json.loads(r.stdout) for r in (default, sync, batch)]
    assert [p["api_mode"] for p in plans] == ["sync", "sync", "batch-api"]
    assert plans[0] == plans[1]
    ratio = Decimal(plans[2]["estimated_cost_usd"]) / Decimal(plans[1]["estimated_cost_usd"])
    assert Decimal("0.45") < ratio < Decimal("0.55"), plans
    words = _invoke("plan", loaded_set, "--dry-run", "--api-mode", "batch-api")
    assert "(batch-api: the Message Batches rate;" in words.stdout
    # And a mode that does not exist is a usage error naming the choices
    wrong = _invoke("plan", loaded_set, "--api-mode", "batches")
    assert wrong.exit_code == 2 and "sync" in wrong.output and "batch-api" in wrong.output


def test_run_and_reprocess_take_the_api_mode_given_over_the_set_s(
    budgetq: Budgetq, loaded_set: str, sessions: sessionmaker[Session], broker_url: str
) -> None:
    # Given a set whose own mode is sync
    with transaction(sessions) as session:
        issue_set = session.scalars(select(IssueSet).where(IssueSet.name == loaded_set)).one()
        issue_set.api_mode = "sync"

    # When it is run in batch-api mode without waiting
    outcome = _invoke("run", loaded_set, "--no-wait", "--api-mode", "batch-api")

    # Then the run and its batches are batch-api, and one submit task for the run went to the workers
    assert outcome.exit_code == 0, outcome.output
    assert "(batch-api): 60 issues in 1 batches" in outcome.stdout
    with transaction(sessions) as session:
        run = session.scalars(select(Run).join(IssueSet).where(IssueSet.name == loaded_set)).one()
        modes = session.scalars(select(Batch.api_mode).where(Batch.run_id == run.id)).all()
    assert run.api_mode == "batch-api" and modes == ["batch-api"]
    assert _queued_tasks(broker_url) == [SUBMIT_MESSAGE_BATCHES]

    # When the set is given batch-api as its own mode and reprocessed in sync mode
    with transaction(sessions) as session:
        session.scalars(select(IssueSet).where(IssueSet.name == loaded_set)).one().api_mode = "batch-api"
    again = _invoke("reprocess", loaded_set, "--priority", "15", "--no-wait", "--api-mode", "sync")

    # Then the new run is sync, its batch sent to the batch task
    assert again.exit_code == 0, again.output
    with transaction(sessions) as session:
        latest = session.scalars(
            select(Run).join(IssueSet).where(IssueSet.name == loaded_set).order_by(Run.id.desc()).limit(1)
        ).one()
    assert (latest.kind, latest.api_mode) == ("reprocess", "sync")
    assert sorted(_queued_tasks(broker_url)) == sorted([PROCESS_BATCH, SUBMIT_MESSAGE_BATCHES])


def test_a_run_left_behind_at_timeout_with_the_embedded_broker_is_stopped_and_says_how_to_resume(
    budgetq: Budgetq, loaded_set: str, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    # Given the embedded broker (no BUDGETQ_REDIS_URL) and a slow stand-in: one call takes 3 s
    from sqlalchemy import text

    from budgetq.adapters.store.engine import make_engine
    from budgetq.devtools.standin.server import StandIn, StandInConfig

    monkeypatch.delenv("BUDGETQ_REDIS_URL")
    standin = StandIn(StandInConfig(latency_s=3.0))
    standin.start()
    try:
        # When the set (12 batches) is run on one local worker thread with a 2 s timeout
        outcome = budgetq(
            "run", loaded_set, "--workers", "1", "--timeout", "2",
            ANTHROPIC_BASE_URL=standin.url, BUDGETQ_MAX_ISSUES_PER_CALL="5",
        )  # fmt: skip
    finally:
        standin.stop()

    # Then the command stops the run, says how to resume it, and exits 1
    assert outcome.code == 1, outcome
    said = outcome.stdout + outcome.stderr
    assert "left behind" in said and f"budgetq reprocess {loaded_set} --failed-only" in said
    # And no batch is left to be called later, unasked, by another command
    engine = make_engine(database_url)
    with engine.connect() as conn:
        run = conn.execute(
            text("SELECT r.id, r.status FROM runs r JOIN issue_sets s ON s.id = r.set_id WHERE s.name = :n"),
            {"n": loaded_set},
        ).one()
        open_batches = conn.scalar(
            text("SELECT count(*) FROM batches WHERE run_id = :r AND status IN ('queued', 'running')"),
            {"r": run.id},
        )
    engine.dispose()
    assert run.status == "stopped" and open_batches == 0
