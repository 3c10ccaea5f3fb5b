"""Planning runs on real PostgreSQL: priority order, oversize, spend-cap deferral, nightly idempotence,
reprocess selectors, and token counts computed once."""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import PLAN_NIGHTLY, REPROCESS, make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.models import Batch, BatchIssue, Issue, IssueSet, IssueTokens, Run, RunIssue
from budgetq.domain.selector import Selector, SelectorKind
from budgetq.domain.statuses import IssueStatus
from budgetq.domain.tokens import CALIBRATION_VERSION, ENCODING_NAME, raw_counts
from budgetq.errors import NotFoundError
from budgetq.services import counting, planning
from budgetq.services.nightly import plan_nightly
from budgetq.services.ondemand import reprocess
from budgetq.services.planning import count_tokens, plan_run
from budgetq.settings import Settings

WORDS = "orders customers null duplicate amount negative stale partition schema drift sync".split()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings on the test database, in stand-in mode, with no broker."""
    return Settings(database_url=database_url, redis_url=None, mode="standin")


@pytest.fixture
def app() -> Celery:
    """A real Celery app on the in-memory transport: messages are sent, no Redis needed."""
    return make_celery(Settings(), "memory://")


def _make_set(sessions: sessionmaker[Session], n: int, *, seed: int = 1, nightly: bool = False) -> int:
    """A set of ``n`` issues with mixed priorities, arriving in random priority order."""
    rng = random.Random(seed)
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, f"plan-{uuid.uuid4().hex[:8]}", nightly=nightly)
        issue_store.insert_issues(
            session,
            set_id,
            [
                issue_store.NewIssue(
                    rng.choice((15, 10, 5, 1)), " ".join(rng.choices(WORDS, k=rng.randint(5, 40))), f"e{i}"
                )
                for i in range(n)
            ],
        )
    return set_id


def _statuses(sessions: sessionmaker[Session], run_id: int) -> dict[int, tuple[str, int, str | None]]:
    with transaction(sessions) as session:
        rows = session.execute(
            select(RunIssue.issue_id, RunIssue.status, RunIssue.priority, RunIssue.reason).where(
                RunIssue.run_id == run_id
            )
        )
        return {issue_id: (status, priority, reason) for issue_id, status, priority, reason in rows}


def test_higher_priority_issues_are_all_queued_before_any_lower_priority_batch(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    # Given 700 issues of all four priorities in random order, at most 25 per call
    set_id = _make_set(sessions, 700)

    # When the set is planned
    planned = plan_run(
        sessions, settings.model_copy(update={"max_issues_per_call": 25}), set_id, kind="manual"
    )

    # Then batches come in non-increasing priority, and no issue sits in a batch led by a lower priority
    with transaction(sessions) as session:
        rows = session.execute(
            select(Batch.seq, Batch.priority, Issue.priority)
            .join(BatchIssue, BatchIssue.batch_id == Batch.id)
            .join(Issue, Issue.id == BatchIssue.issue_id)
            .where(Batch.run_id == planned.run_id)
        ).all()
    leading = [p for _, p in sorted({(seq, p) for seq, p, _ in rows})]
    assert leading == sorted(leading, reverse=True) and set(leading) == {15, 10, 5, 1}
    assert all(issue_priority <= batch_priority for _, batch_priority, issue_priority in rows)
    assert len(rows) == 700 and len(planned.batch_ids) == planned.lower_bound == 28


def test_an_issue_too_long_for_any_call_is_oversize_with_the_numbers_and_the_rest_proceeds(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    # Given a 20,000-token window (15,000 under the guard), max_tokens 2,000, and one 60,000-character issue
    set_id = _make_set(sessions, 30, seed=2)
    with transaction(sessions) as session:
        issue_store.insert_issues(session, set_id, [issue_store.NewIssue(10, "overflowing " * 5_000, "huge")])
        huge = session.scalar(select(Issue.id).where(Issue.set_id == set_id, Issue.external_id == "huge"))
    small_window = settings.model_copy(update={"context_window": 20_000, "max_tokens_per_call": 2_000})

    # When it is planned
    planned = plan_run(sessions, small_window, set_id, kind="manual")

    # Then that issue alone is oversize, with its size and the limit, and the 30 others are queued
    assert planned.run_id is not None
    statuses = _statuses(sessions, planned.run_id)
    status, _, reason = statuses.pop(huge)
    assert status == IssueStatus.OVERSIZE.value and reason is not None
    assert f"but a call allows {planned.limits.input_limit:,}" in reason and "needs 1" in reason
    assert {s for s, _, _ in statuses.values()} == {IssueStatus.PENDING.value} and len(statuses) == 30


def test_a_spend_cap_defers_the_lowest_priorities_with_a_reason(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    # Given 400 issues whose plan is expected to cost more than $0.20
    set_id = _make_set(sessions, 400, seed=3)
    preview = plan_run(sessions, settings, set_id, kind="manual", dry_run=True)
    assert preview.forecast is not None and preview.forecast.cost_usd > Decimal("0.20")

    # When a run is planned with a $0.20 cap
    planned = plan_run(sessions, settings, set_id, kind="manual", spend_cap_usd=Decimal("0.20"))

    # Then its expected cost fits, and the deferred issues are recorded with the reason, never queued
    assert planned.forecast is not None and planned.forecast.cost_usd <= Decimal("0.20")
    assert planned.run_id is not None and planned.deferred
    statuses = _statuses(sessions, planned.run_id)
    deferred = {i: s for i, s in statuses.items() if s[0] == IssueStatus.DEFERRED.value}
    kept = {i: s for i, s in statuses.items() if s[0] == IssueStatus.PENDING.value}
    assert len(deferred) + len(kept) == 400 and kept
    assert max(p for _, p, _ in deferred.values()) <= min(p for _, p, _ in kept.values())
    assert all(r is not None and "spend cap of $0.20" in r for _, _, r in deferred.values())
    with transaction(sessions) as session:
        queued = set(
            session.scalars(
                select(BatchIssue.issue_id)
                .join(Batch, Batch.id == BatchIssue.batch_id)
                .where(Batch.run_id == planned.run_id)
            )
        )
        assert queued == set(kept) and session.get_one(Run, planned.run_id).spend_cap_usd == Decimal("0.20")


def test_nightly_planning_twice_for_one_night_makes_one_run_of_the_unanswered_issues(
    sessions: sessionmaker[Session], settings: Settings, app: Celery
) -> None:
    # Given a nightly set of 50 issues, 5 of which an earlier run answered
    set_id = _make_set(sessions, 50, seed=4, nightly=True)
    earlier = plan_run(sessions, settings, set_id, kind="manual")
    with transaction(sessions) as session:
        answered = session.scalars(
            select(RunIssue.issue_id)
            .where(RunIssue.run_id == earlier.run_id)
            .order_by(RunIssue.issue_id)
            .limit(5)
        ).all()
        session.execute(
            update(RunIssue)
            .where(RunIssue.run_id == earlier.run_id, RunIssue.issue_id.in_(answered))
            .values(status=IssueStatus.ANSWERED.value)
        )
        session.execute(update(Run).where(Run.id == earlier.run_id).values(status="stopped"))
    night = dt.date(2031, 1, 5)

    # When nightly planning runs twice for the same night
    first = [o for o in plan_nightly(sessions, settings, app, night) if o.set_id == set_id]
    second = [o for o in plan_nightly(sessions, settings, app, night) if o.set_id == set_id]

    # Then one run exists for that night, planned and enqueued once, covering the 45 unanswered issues
    assert first[0].created and not second[0].created and first[0].run_id == second[0].run_id
    with transaction(sessions) as session:
        runs = session.scalars(select(Run).where(Run.set_id == set_id, Run.nightly_date == night)).all()
        assert len(runs) == 1 and runs[0].kind == "nightly" and runs[0].selector == {"kind": "unanswered"}
        unsent = session.scalar(
            select(func.count()).where(Batch.run_id == runs[0].id, Batch.enqueued_at.is_(None))
        )
    statuses = _statuses(sessions, runs[0].id)
    assert len(statuses) == 45 and not set(answered) & set(statuses) and unsent == 0


@pytest.fixture
def finished_run(sessions: sessionmaker[Session], settings: Settings) -> Iterator[tuple[int, list[int]]]:
    """A set whose only run ended with three failed issues and the rest answered: (set id, failed ids)."""
    set_id = _make_set(sessions, 40, seed=5)
    planned = plan_run(sessions, settings, set_id, kind="manual")
    with transaction(sessions) as session:
        ids = session.scalars(
            select(RunIssue.issue_id).where(RunIssue.run_id == planned.run_id).order_by(RunIssue.issue_id)
        ).all()
        failed = list(ids[:3])
        session.execute(
            update(RunIssue)
            .where(RunIssue.run_id == planned.run_id)
            .values(status=IssueStatus.ANSWERED.value)
        )
        session.execute(
            update(RunIssue)
            .where(RunIssue.run_id == planned.run_id, RunIssue.issue_id.in_(failed))
            .values(status=IssueStatus.FAILED.value, reason="failed 3 times")
        )
        session.execute(update(Run).where(Run.id == planned.run_id).values(status="failed"))
    yield set_id, failed


def _issue_ids(sessions: sessionmaker[Session], set_id: int, **where: object) -> set[int]:
    with transaction(sessions) as session:
        stmt = select(Issue.id).where(Issue.set_id == set_id)
        for column, value in where.items():
            stmt = stmt.where(getattr(Issue, column) == value)
        return set(session.scalars(stmt))


@pytest.mark.parametrize("kind", ["failed", "issues", "priority", "all"])
def test_reprocess_makes_a_new_run_of_exactly_the_selected_issues(
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Celery,
    finished_run: tuple[int, list[int]],
    kind: str,
) -> None:
    # Given a finished run with three failed issues
    set_id, failed = finished_run
    everything = _issue_ids(sessions, set_id)
    some = sorted(everything)[10:14]
    selector, expected = {
        "failed": (Selector(SelectorKind.FAILED), set(failed)),
        "issues": (Selector(SelectorKind.ISSUES, tuple(some)), set(some)),
        "priority": (Selector(SelectorKind.PRIORITY, priority=15), _issue_ids(sessions, set_id, priority=15)),
        "all": (Selector(), everything),
    }[kind]

    # When it is reprocessed with the selector
    planned = reprocess(sessions, settings, app, set_id, selector)

    # Then a new reprocess run covers exactly the selected issues, and its batches were sent
    assert planned.run_id is not None and planned.created
    assert set(_statuses(sessions, planned.run_id)) == expected
    with transaction(sessions) as session:
        run = session.get_one(Run, planned.run_id)
        assert run.kind == "reprocess" and run.selector == selector.to_json()
        assert (
            session.scalar(select(func.count()).where(Batch.run_id == run.id, Batch.enqueued_at.is_(None)))
            == 0
        )


def test_reprocess_refuses_unknown_ids_and_an_empty_selection(
    sessions: sessionmaker[Session], settings: Settings, app: Celery
) -> None:
    # Given a set none of whose issues ever failed
    set_id = _make_set(sessions, 5, seed=6)

    # Then ids from elsewhere, and "the failed ones", are refused with a reason and no run is made
    with pytest.raises(NotFoundError, match="not in set"):
        reprocess(sessions, settings, app, set_id, Selector(SelectorKind.ISSUES, (987654321,)))
    with pytest.raises(NotFoundError, match="nothing to reprocess"):
        reprocess(sessions, settings, app, set_id, Selector(SelectorKind.FAILED))
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).where(Run.set_id == set_id)) == 0


def test_replanning_a_set_tokenizes_nothing_again(
    sessions: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a set planned once: its counts are stored with the encoding and calibration version
    set_id = _make_set(sessions, 60, seed=7)
    first = plan_run(sessions, settings, set_id, kind="manual", dry_run=True)
    with transaction(sessions) as session:
        stored = session.execute(
            select(
                Issue.text,
                IssueTokens.raw_tokens,
                IssueTokens.token_encoding,
                IssueTokens.calibration_version,
            )
            .join(IssueTokens, IssueTokens.issue_id == Issue.id)
            .where(Issue.set_id == set_id)
        ).all()
    assert len(stored) == 60
    assert [r.raw_tokens for r in stored] == raw_counts([r.text for r in stored])
    assert {(r.token_encoding, r.calibration_version) for r in stored} == {
        (ENCODING_NAME, CALIBRATION_VERSION)
    }

    # When the counter is made to fail and the set is planned again
    def no_counting(*_: object, **__: object) -> Iterator[list[int]]:
        raise AssertionError("replanning tokenized again")
        yield []

    monkeypatch.setattr(planning, "count_chunks", no_counting)
    second = plan_run(sessions, settings, set_id, kind="manual")

    # Then nothing was counted and the plan is the same
    assert count_tokens(sessions, set_id) == 0
    assert second.plan.batches == first.plan.batches


def test_stale_counts_are_counted_again_and_two_processes_count_like_one(
    sessions: sessionmaker[Session],
) -> None:
    # Given a set whose counts come from another encoding
    set_id = _make_set(sessions, 300, seed=8)
    with transaction(sessions) as session:
        ids = session.scalars(select(Issue.id).where(Issue.set_id == set_id)).all()
        session.add_all(
            IssueTokens(issue_id=i, raw_tokens=1, token_encoding="p50k", calibration_version="v0")
            for i in ids
        )

    # When the set's counts are brought up to date
    assert count_tokens(sessions, set_id) == 300

    # Then every count is the current encoding's
    with transaction(sessions) as session:
        texts = list(session.scalars(select(Issue.text).where(Issue.set_id == set_id).order_by(Issue.id)))
        counts = list(
            session.scalars(
                select(IssueTokens.raw_tokens)
                .join(Issue, IssueTokens.issue_id == Issue.id)
                .where(Issue.set_id == set_id)
                .order_by(Issue.id)
            )
        )
    assert counts == raw_counts(texts)
    # And the bulk counter's worker processes give the same counts, chunk by chunk in order
    chunks = [texts[:100], texts[100:250], texts[250:]]
    assert list(counting.count_chunks(chunks, 2)) == [raw_counts(c) for c in chunks]


def test_the_scheduler_app_runs_nightly_planning_and_reprocess_tasks(
    sessions: sessionmaker[Session], database_url: str, broker_url: str, tmp_path: Path
) -> None:
    # Given a nightly set and a real scheduler worker process (threads pool) on the test broker
    set_id = _make_set(sessions, 20, seed=9, nightly=True)
    env = {
        **os.environ,
        "BUDGETQ_DATABASE_URL": database_url,
        "BUDGETQ_REDIS_URL": broker_url,
        "BUDGETQ_MODE": "standin",
    }
    command = [sys.executable, "-m", "celery", "-A", "scheduler.app", "worker", "-Q", "scheduler"]
    command += ["-P", "threads", "-c", "2", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with (tmp_path / "scheduler.log").open("wb") as log:
        worker = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        sender = make_celery(Settings(), broker_url)

        # When PLAN_NIGHTLY and REPROCESS are sent by name
        sender.send_task(PLAN_NIGHTLY, args=["2031-02-03"])
        sender.send_task(REPROCESS, args=[set_id, {"kind": "priority", "priority": 10}])

        # Then the set gets its nightly run for that night and a reprocess run of its priority-10 issues
        deadline = time.monotonic() + 60
        while True:
            with transaction(sessions) as session:
                counted = session.execute(
                    select(Run.kind, func.count()).where(Run.set_id == set_id).group_by(Run.kind)
                )
                kinds = {kind: n for kind, n in counted}
                nights = session.scalars(select(Run.nightly_date).where(Run.set_id == set_id)).all()
            if kinds == {"nightly": 1, "reprocess": 1}:
                break
            assert time.monotonic() < deadline, (kinds, (tmp_path / "scheduler.log").read_text()[-3000:])
            time.sleep(0.2)
        assert dt.date(2031, 2, 3) in nights
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_deleting_issues_deletes_their_counts(sessions: sessionmaker[Session]) -> None:
    # Given two counted sets
    doomed, kept = _make_set(sessions, 40, seed=9), _make_set(sessions, 30, seed=10)
    assert count_tokens(sessions, doomed) == 40 and count_tokens(sessions, kept) == 30

    # When one issue of the kept set is deleted directly, another's text changes, and the other set is
    # deleted whole
    with transaction(sessions) as session:
        victim, edited = session.scalars(
            select(Issue.id).where(Issue.set_id == kept).order_by(Issue.id).limit(2)
        ).all()
        session.execute(delete(Issue).where(Issue.id == victim))
        session.execute(update(Issue).where(Issue.id == edited).values(text="reworded", chars=8))
        session.execute(
            update(Issue).where(Issue.set_id == kept, Issue.id != edited).values(priority=Issue.priority)
        )
        session.execute(delete(IssueSet).where(IssueSet.id == doomed))

    # Then no count is left without its issue, the edited issue's count is gone, and the rest stay
    with transaction(sessions) as session:
        orphans = session.scalar(
            select(func.count())
            .select_from(IssueTokens)
            .outerjoin(Issue, Issue.id == IssueTokens.issue_id)
            .where(Issue.id.is_(None))
        )
        kept_counts = session.scalar(
            select(func.count())
            .select_from(IssueTokens)
            .join(Issue, Issue.id == IssueTokens.issue_id)
            .where(Issue.set_id == kept)
        )
    assert orphans == 0
    assert kept_counts == 28
    # And the next plan counts the edited issue, and only it
    assert count_tokens(sessions, kept) == 1
