"""Answer reuse (services.reusing): real PostgreSQL, a real worker process, the stand-in via the SDK.

Each test writes texts no other test uses (a tag of letters, so masking leaves it), so the answers one
test buys are never found by another.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.dashboard import read_dashboard
from budgetq.adapters.store.diagnoses import diagnoses
from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.reuse import set_reuse_answers
from budgetq.services.planning import PlannedRun, enqueue, plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import wait_for_run

LETTERS = str.maketrans("0123456789", "ghijklmnop")


def tag() -> str:
    return uuid.uuid4().hex.translate(LETTERS)


def make_set(sessions: sessionmaker[Session], texts: list[str], priority: int = 10) -> int:
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, f"reuse-{tag()}")
        issue_store.insert_issues(
            session, set_id, [issue_store.NewIssue(priority, t, f"check.{n}") for n, t in enumerate(texts)]
        )
    return set_id


def texts_of(label: str, n: int, failing: int = 52) -> list[str]:
    return [
        f"{failing} rows failed not_null on {label}_table_{chr(97 + i % 26)}{i // 26} column"
        for i in range(n)
    ]


def run(sessions: sessionmaker[Session], settings: Settings, set_id: int, **kw: Any) -> PlannedRun:
    planned = plan_run(sessions, settings, set_id, kind="manual", **kw)
    assert planned.run_id is not None
    enqueue(make_celery(settings, settings.redis_url or ""), sessions, planned.batch_ids)
    progress = wait_for_run(sessions, planned.run_id)
    assert progress.status == "succeeded", progress
    return planned


def one(sessions: sessionmaker[Session], sql: str, **params: Any) -> Any:
    with transaction(sessions) as session:
        return session.execute(text(sql), params).one()


def calls(sessions: sessionmaker[Session], run_id: int) -> int:
    return int(one(sessions, "SELECT count(*) FROM llm_calls WHERE run_id = :r", r=run_id)[0])


@pytest.fixture
def reuse_settings(test_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BUDGETQ_REUSE_MODE", "text")
    return test_settings.model_copy(update={"reuse_mode": "text"})


def test_a_second_run_reuses_every_answer_at_no_cost_and_the_views_count_the_saving(
    sessions: sessionmaker[Session], reuse_settings: Settings, start_worker: Any
) -> None:
    # Given 40 issues answered by a first run
    start_worker(concurrency=4)
    texts = texts_of(tag(), 40)
    first = run(sessions, reuse_settings, make_set(sessions, texts))
    assert first.run_id is not None and calls(sessions, first.run_id) >= 1
    paid = one(sessions, "SELECT sum(cost_usd) FROM llm_calls WHERE run_id = :r", r=first.run_id)[0]

    # When the same texts come again in another set
    second_set = make_set(sessions, texts)
    second = run(sessions, reuse_settings, second_set)
    assert second.run_id is not None

    # Then no call is made, every issue ends reused with a result pointing at the first run's answer
    assert calls(sessions, second.run_id) == 0
    assert second.reuse is not None and len(second.reuse.reused) == 40
    statuses = one(
        sessions,
        "SELECT count(*) FILTER (WHERE status = 'reused'), count(*) FROM run_issues WHERE run_id = :r",
        r=second.run_id,
    )
    assert tuple(statuses) == (40, 40)
    pointing = one(
        sessions,
        "SELECT count(*) FROM results r JOIN results s ON s.id = r.reused_from_result_id "
        "WHERE r.run_id = :r AND s.run_id = :first AND s.issue_id <> r.issue_id "
        "AND r.diagnosis = s.diagnosis AND r.llm_call_id IS NULL",
        r=second.run_id,
        first=first.run_id,
    )[0]
    assert pointing == 40
    # And cost_by_run says 40 reused, saving what the first run paid (to the micro-dollar per issue)
    view = one(
        sessions,
        "SELECT reused_issues, saved_usd, cost_usd FROM cost_by_run WHERE run_id = :r",
        r=second.run_id,
    )
    assert view.reused_issues == 40 and view.cost_usd == 0
    assert abs(view.saved_usd - paid) <= Decimal("0.000001") * 40
    # And cost_by_set has a row for the second set although it made no call, and cost_by_day counts it
    by_set = one(
        sessions,
        "SELECT reused_issues, saved_usd, attempts FROM cost_by_set WHERE set_id = :s",
        s=second_set,
    )
    assert by_set.reused_issues == 40 and by_set.attempts is None
    assert abs(by_set.saved_usd - paid) <= Decimal("0.000001") * 40
    by_day = one(sessions, "SELECT sum(reused_issues) FROM cost_by_day")[0]
    assert by_day >= 40
    # And the diagnoses say where each answer came from
    source = one(
        sessions,
        "SELECT count(*) FROM run_diagnoses WHERE run_id = :r AND reused_from_run_id = :first "
        "AND reused_from_answered_at IS NOT NULL",
        r=second.run_id,
        first=first.run_id,
    )[0]
    assert source == 40
    # And `budgetq results` and the HTML report's diagnoses table show it
    with transaction(sessions) as session:
        exported = list(diagnoses(session, run_id=second.run_id))
        board = read_dashboard(session, dt.date.today() - dt.timedelta(days=1), dt.datetime.now(dt.UTC))
    assert {(row["status"], row["reused_from_run_id"]) for row in exported} == {("reused", first.run_id)}
    shown = [row for row in board.rows("diagnoses") if row["run_id"] == second.run_id]
    assert len(shown) == 40
    assert all(str(row["reused_from"]).startswith(f"run {first.run_id}, ") for row in shown)

    # When the second set is run with fresh, or its reuse switched off, it pays again
    fresh = run(sessions, reuse_settings, make_set(sessions, texts), fresh=True)
    assert fresh.run_id is not None and calls(sessions, fresh.run_id) >= 1
    assert fresh.reuse is not None and not fresh.reuse.reused
    off_set = make_set(sessions, texts)
    with transaction(sessions) as session:
        set_reuse_answers(session, off_set, False)
    off = plan_run(sessions, reuse_settings, off_set, kind="manual", dry_run=True)
    assert off.reuse is not None and not off.reuse.reused and off.plan.batches


def test_age_confidence_mode_and_billing_limit_what_is_reused(
    sessions: sessionmaker[Session], reuse_settings: Settings, start_worker: Any
) -> None:
    # Given 30 answered issues
    start_worker(concurrency=4)
    label = tag()
    first = run(sessions, reuse_settings, make_set(sessions, texts_of(label, 30)))
    again = make_set(sessions, texts_of(label, 30))

    def reused(settings: Settings, set_id: int = again) -> int:
        planned = plan_run(sessions, settings, set_id, kind="manual", dry_run=True)
        assert planned.reuse is not None
        return len(planned.reuse.reused)

    assert reused(reuse_settings) == 30
    # A confidence floor keeps only the answers at or above it
    confident = one(
        sessions, "SELECT count(*) FROM results WHERE run_id = :r AND confidence >= 0.75", r=first.run_id
    )[0]
    assert 0 < confident < 30
    assert reused(reuse_settings.model_copy(update={"reuse_min_confidence": 0.75})) == confident
    # A live run never takes a stand-in's answers
    live = reuse_settings.model_copy(update={"mode": "live", "anthropic_api_key": "sk-test"})
    assert reused(live) == 0
    # A changed failing count is a new question in text mode, the same one in masked and check mode
    changed = make_set(sessions, texts_of(label, 30, failing=57))
    assert reused(reuse_settings, changed) == 0
    for mode in ("masked", "check"):
        keyed = reuse_settings.model_copy(update={"reuse_mode": mode})
        run(sessions, keyed, make_set(sessions, texts_of(label, 30)), fresh=True)
        assert reused(keyed, changed) == 30
    # Answers older than the maximum age are not reused
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE results SET created_at = created_at - interval '8 days' WHERE run_id = :r"),
            {"r": first.run_id},
        )
    assert reused(reuse_settings) == 0
    assert reused(reuse_settings.model_copy(update={"reuse_max_age": dt.timedelta(days=9)})) == 30


def test_duplicates_inside_a_run_are_sent_once_and_each_gets_the_answer(
    sessions: sessionmaker[Session], reuse_settings: Settings, start_worker: Any, standin: Any
) -> None:
    # Given 10 distinct questions, each asked three times in one set (one of each at priority 15)
    start_worker(concurrency=4)
    distinct = texts_of(tag(), 10)
    set_id = make_set(sessions, distinct * 3)
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE issues SET priority = 15 WHERE set_id = :s AND id IN "
                 "(SELECT max(id) FROM issues WHERE set_id = :s GROUP BY text)"),
            {"s": set_id},
        )  # fmt: skip
    served_before = messages_served(standin)

    # When the set is run
    planned = run(sessions, reuse_settings, set_id)
    assert planned.run_id is not None

    # Then one call carries the 10 questions, and all 30 issues have an answer
    assert calls(sessions, planned.run_id) == 1
    assert messages_served(standin) - served_before == 1
    assert sum(b.issue_count for b in one_batches(sessions, planned.run_id)) == 10
    statuses = one(
        sessions,
        "SELECT count(*) FILTER (WHERE status = 'answered'), count(*) FILTER (WHERE status = 'reused'), "
        "(SELECT count(*) FROM results WHERE run_id = :r) FROM run_issues WHERE run_id = :r",
        r=planned.run_id,
    )
    assert tuple(statuses) == (10, 20, 30)
    # And the carrier is the priority-15 issue; copies share its answer and saved its share of the call
    copies = one(
        sessions,
        "SELECT count(*), bool_and(c.priority = 15), bool_and(r.diagnosis = s.diagnosis), sum(r.saved_usd) "
        "FROM results r JOIN results s ON s.id = r.reused_from_result_id "
        "JOIN issues c ON c.id = s.issue_id WHERE r.run_id = :r",
        r=planned.run_id,
    )
    paid = one(sessions, "SELECT sum(cost_usd) FROM llm_calls WHERE run_id = :r", r=planned.run_id)[0]
    assert copies[0] == 20 and copies[1] and copies[2]
    assert abs(copies[3] - 2 * paid) <= Decimal("0.000001") * 20
    view = one(sessions, "SELECT reused_issues FROM cost_by_run WHERE run_id = :r", r=planned.run_id)
    assert view.reused_issues == 20


def messages_served(standin: Any) -> int:
    return sum(1 for entry in standin.log() if entry["path"] == "/v1/messages")


def one_batches(sessions: sessionmaker[Session], run_id: int) -> list[Any]:
    with transaction(sessions) as session:
        return list(session.execute(text("SELECT issue_count FROM batches WHERE run_id = :r"), {"r": run_id}))
