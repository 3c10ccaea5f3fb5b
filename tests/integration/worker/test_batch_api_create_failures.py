"""What a failed Message Batch create leads to (issue 17, point 6): a status the retry policy calls
retryable is tried again within the create call, bounded by it; any other is never sent again as the
same create. Real worker processes, PostgreSQL, Redis and the stand-in's Message Batches API, whose
creates are scripted to fail; the test plays the beat and counts the creates the stand-in received.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import POLL_MESSAGE_BATCHES, make_celery
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.standin.server import BatchBehaviour
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set
from tests.integration.worker.conftest import OwnDatabase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ISSUES, PER_CALL = 40, 10  # 4 batches, sent as the 4 requests of one Message Batch


def _rows(sessions: sessionmaker[Session], sql: str, run_id: int) -> list[tuple[Any, ...]]:
    with transaction(sessions) as session:
        return [tuple(r) for r in session.execute(text(sql), {"run": run_id})]


def _start_run(sessions: sessionmaker[Session], settings: Settings, app: Celery) -> int:
    set_id = make_seed_set(sessions, f"create-{uuid.uuid4().hex[:8]}", ISSUES)
    planned = plan_run(sessions, settings, set_id, kind="manual", api_mode="batch-api")
    assert planned.run_id is not None and len(planned.batch_ids) == ISSUES // PER_CALL
    enqueue(app, sessions, planned.batch_ids)
    return planned.run_id


def _drive(app: Celery, sessions: sessionmaker[Session], run_id: int, timeout_s: float = 60) -> str:
    """Be the beat: send the poll task until the run leaves 'running'; its final status."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.send_task(POLL_MESSAGE_BATCHES)
        time.sleep(0.4)
        (status,) = _rows(sessions, "SELECT status FROM runs WHERE id = :run", run_id)
        if status[0] != "running":
            return str(status[0])
    raise AssertionError(f"run {run_id} still running after {timeout_s}s")


def _sent_per_request(standin: Any) -> Counter[str]:
    """How many creates the stand-in received carrying each custom id, refused or not."""
    return Counter(c for _, ids in standin.batches.create_log for c in ids)


@pytest.fixture
def app(test_settings: Settings) -> Celery:
    return make_celery(test_settings, test_settings.redis_url or "")


@pytest.fixture
def sessions(own_database: OwnDatabase) -> sessionmaker[Session]:
    """A database of the test's own: a poll submits every waiting run of its database, and one test's
    runs left waiting must not be sent to the next test's stand-in."""
    return own_database.sessions


@pytest.fixture
def settings(test_settings: Settings, own_database: OwnDatabase) -> Settings:
    return test_settings.model_copy(
        update={"max_issues_per_call": PER_CALL, "database_url": own_database.url}
    )


@pytest.fixture
def start_worker(own_start_worker: Callable[..., Any]) -> Callable[..., Any]:
    """Workers on the test's own database."""
    return own_start_worker


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_create_refused_for_good_is_never_sent_again_and_its_batches_fail_with_the_reason(
    status: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Celery,
    start_worker: Callable[..., Any],
    standin: Any,
) -> None:
    # Given a stand-in whose Message Batch creates all answer ``status`` (the same request would fail
    # the same way: the retry policy does not retry it)
    standin.batches.set_behaviour(BatchBehaviour(create_statuses=(status,) * 50))
    start_worker(concurrency=2)

    # When a batch-api run of 4 batches goes through (the beat polling all the while)
    run_id = _start_run(sessions, settings, app)
    final = _drive(app, sessions, run_id)

    # Then the stand-in received one create, each request in it once, and none was sent again
    assert standin.batches.create_attempts == 1, standin.batches.create_log
    assert set(_sent_per_request(standin).values()) == {1}
    # And the run failed: every batch failed whole (not halved), every issue with the status in its reason
    assert final == "failed"
    batches = _rows(sessions, "SELECT status, failures, last_error FROM batches WHERE run_id = :run", run_id)
    assert len(batches) == ISSUES // PER_CALL
    assert all(s == "failed" and f"{status} " in (e or "") for s, _, e in batches), batches
    issues = _rows(sessions, "SELECT status, reason FROM run_issues WHERE run_id = :run", run_id)
    assert len(issues) == ISSUES
    assert all(s == "failed" and "creating the Message Batch failed" in r for s, r in issues), issues[:3]


@pytest.mark.parametrize("status", [429, 500, 529])
def test_a_create_that_failed_retryably_is_retried_within_the_call_and_bounded(
    status: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Celery,
    start_worker: Callable[..., Any],
    standin: Any,
) -> None:
    # Given a stand-in whose next 2 creates answer ``status`` (retryable), and workers that try 3 times
    standin.batches.set_behaviour(BatchBehaviour(create_statuses=(status,) * 2))
    start_worker(concurrency=2, BUDGETQ_RETRY_MAX_ATTEMPTS="3")

    # When a batch-api run of 4 batches goes through
    run_id = _start_run(sessions, settings, app)
    final = _drive(app, sessions, run_id)

    # Then the create was tried 3 times in one call (the retry policy's backoff) and the third made it:
    # one Message Batch, every issue answered, no batch blamed
    assert [s for s, _ in standin.batches.create_log] == [status, status, 200]
    assert final == "succeeded"
    assert _rows(sessions, "SELECT count(*) FROM message_batches WHERE run_id = :run", run_id) == [(1,)]
    assert _rows(sessions, "SELECT max(failures) FROM batches WHERE run_id = :run", run_id) == [(0,)]

    # When the API keeps answering ``status`` to a new run's create (the polls sent above done by then)
    time.sleep(2.0)
    standin.batches.set_behaviour(BatchBehaviour(create_statuses=(status,) * 50))
    before = standin.batches.create_attempts
    again = _start_run(sessions, settings, app)
    deadline, nudged = time.monotonic() + 30, False
    while not _rows(sessions, "SELECT count(*) FROM batches WHERE run_id = :run AND status = 'queued' "
                    "AND last_error LIKE 'creating the Message Batch failed%'", again)[0][0]:  # fmt: skip
        assert time.monotonic() < deadline, standin.batches.create_log
        time.sleep(0.2)
        if not nudged and standin.batches.create_attempts == before and time.monotonic() > deadline - 28:
            # The submit task can find the batches still locked by the enqueuer's own bookkeeping and
            # submit nothing (they wait for the next poll): be that poll, once.
            app.send_task(POLL_MESSAGE_BATCHES)
            nudged = True
    time.sleep(1.0)

    # Then that submission stopped after the policy's 3 attempts, and its batches wait for the next poll
    # with one failure counted each, as a synchronous call's used-up retries count one
    assert standin.batches.create_attempts - before == 3, standin.batches.create_log
    batches = _rows(sessions, "SELECT status, failures FROM batches WHERE run_id = :run", again)
    assert batches == [("queued", 1)] * (ISSUES // PER_CALL)


def test_a_create_too_large_is_sent_again_in_halves_and_a_single_request_too_large_is_split(
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Celery,
    start_worker: Callable[..., Any],
    standin: Any,
) -> None:
    # Given a stand-in whose first 3 creates answer 413 (the request too large), then accept
    standin.batches.set_behaviour(BatchBehaviour(create_statuses=(413,) * 3))
    start_worker(concurrency=2)

    # When a batch-api run of 4 batches goes through
    run_id = _start_run(sessions, settings, app)
    final = _drive(app, sessions, run_id)

    # Then the 4 requests were never sent again as the same create: the 413 on 4 was sent again as two
    # creates of 2; the 413s on those, as creates of 1; only then (a single request too large, as a
    # synchronous 413 does) its batch is halved, and its halves sent
    log = standin.batches.create_log
    assert [(s, len(ids)) for s, ids in log[:3]] == [(413, 4), (413, 2), (413, 1)], log
    sizes = sorted((s, len(ids)) for s, ids in log)
    assert sizes == [(200, 1), (200, 2), (200, 2), (413, 1), (413, 2), (413, 4)], log
    assert len({frozenset(ids) for _, ids in log}) == len(log), log
    split = _rows(sessions, "SELECT count(*) FROM batches WHERE run_id = :run AND status = 'split'", run_id)
    assert split == [(1,)]
    assert final == "succeeded"
    issues = _rows(sessions, "SELECT status FROM run_issues WHERE run_id = :run", run_id)
    assert issues == [("answered",)] * ISSUES


def test_an_api_that_keeps_failing_creates_retryably_fails_the_run_instead_of_keeping_it_running(
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Celery,
    start_worker: Callable[..., Any],
    standin: Any,
) -> None:
    # Given an API that answers 529 to every create, workers that try each create twice, and batches
    # allowed 1 failure (a create whose retries are used up counts one, as a synchronous call's would)
    standin.batches.set_behaviour(BatchBehaviour(create_statuses=(529,) * 1000))
    start_worker(concurrency=2, BUDGETQ_RETRY_MAX_ATTEMPTS="2", BUDGETQ_BATCH_MAX_FAILURES="1")

    # When a batch-api run of 4 batches of 10 issues is polled until it ends
    run_id = _start_run(sessions, settings, app)
    final = _drive(app, sessions, run_id, timeout_s=90)

    # Then it ends failed (halved down to single issues, then failed, as the synchronous path does)
    # with the API's answer as every issue's reason, having sent nothing twice in one create
    assert final == "failed"
    issues = _rows(sessions, "SELECT status, reason FROM run_issues WHERE run_id = :run", run_id)
    assert len(issues) == ISSUES
    assert all(s == "failed" and "529" in r for s, r in issues), issues[:3]
    assert all(status == 529 for status, _ in standin.batches.create_log)
