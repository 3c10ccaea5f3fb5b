"""The reaper on real PostgreSQL and Redis: expired leases, lost messages, orphans, finished runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis
from celery import Celery
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import LLM_QUEUE, REAP, make_celery
from budgetq.adapters.ratelimit.limiter import redis_url_for_client
from budgetq.adapters.store import batches as batch_store
from budgetq.adapters.store import spend as spend_store
from budgetq.adapters.store import spend_caps
from budgetq.adapters.store.engine import transaction
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from scheduler.beat import schedule
from scheduler.reaper import beat_entry, broker_backlog, reap_once
from tests.integration.pipeline import make_seed_set


@pytest.fixture
def app(test_settings: Settings) -> Iterator[Celery]:
    """The Celery app the reaper sends with (the test broker)."""
    celery = make_celery(test_settings, test_settings.redis_url or "")
    yield celery
    celery.close()


@pytest.fixture
def broker(broker_url: str) -> redis.Redis:
    """A client on the broker's Redis, to look into the queue."""
    return redis.Redis.from_url(redis_url_for_client(broker_url))


def planned_run(sessions: sessionmaker[Session], settings: Settings, n: int = 30) -> tuple[int, list[int]]:
    """A run planned over ``n`` seed issues (10 per batch), not sent anywhere."""
    set_id = make_seed_set(sessions, f"reap-{uuid.uuid4().hex[:8]}", n)
    planned = plan_run(
        sessions, settings.model_copy(update={"max_issues_per_call": 10}), set_id, kind="manual"
    )
    assert planned.run_id is not None
    return planned.run_id, list(planned.batch_ids)


def expire(sessions: sessionmaker[Session], batch_id: int, failures: int = 0) -> None:
    """Make a batch look like its worker died mid-call: running, with a lease that ran out."""
    with transaction(sessions) as session:
        session.execute(
            text(
                "UPDATE batches SET status = 'running', lease_token = :t, failures = :f, "
                "lease_until = now() - interval '1 second', enqueued_at = now() WHERE id = :id"
            ),
            {"t": uuid.uuid4(), "f": failures, "id": batch_id},
        )


def sent_minutes_ago(sessions: sessionmaker[Session], run_id: int, minutes: int) -> None:
    """Note every batch of the run as sent ``minutes`` ago."""
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE batches SET enqueued_at = now() - make_interval(mins => :m) WHERE run_id = :r"),
            {"m": minutes, "r": run_id},
        )


def sent_ids(broker: redis.Redis) -> list[int]:
    """Batch ids of the task messages waiting in the llm queue, in the order workers will get them."""
    import base64
    import json

    ids = []
    for raw in reversed(broker.lrange(LLM_QUEUE, 0, -1)):  # kombu pushes left and pops right
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.append(int(body[0][0]))
    return ids


def test_an_expired_lease_is_requeued_with_a_failure_and_sent_again(
    sessions: sessionmaker[Session], test_settings: Settings, app: Celery, broker: redis.Redis
) -> None:
    # Given a planned run whose first batch's worker died mid-call, the others sent recently
    run_id, batch_ids = planned_run(sessions, test_settings)
    with transaction(sessions) as session:
        session.execute(text("UPDATE batches SET enqueued_at = now() WHERE run_id = :r"), {"r": run_id})
    expire(sessions, batch_ids[0])
    with transaction(sessions) as session:
        held = spend_store.reserve(session, run_id, batch_ids[0], Decimal("0.25"), None)

    # When the reaper passes
    report = reap_once(sessions, app, test_settings)

    # Then the dead call's spend reservation stays counted, as an unknown outcome, no longer in flight
    with transaction(sessions) as session:
        state = spend_caps.run_cap(session, run_id)
        status = session.scalar(text("SELECT status FROM spend_reservations WHERE id = :id"), {"id": held.id})
    assert (status, state.reserved, state.held) == ("unknown", Decimal("0.25"), Decimal(0))
    # And the batch is queued again with one failure and a reason, and its task is in the broker
    assert report.requeued == (batch_ids[0],)
    with transaction(sessions) as session:
        row = session.execute(
            text("SELECT status, failures, last_error, lease_token FROM batches WHERE id = :id"),
            {"id": batch_ids[0]},
        ).one()
        claim = batch_store.claim(session, batch_ids[0], 60)
    assert (row.status, row.failures, row.lease_token) == ("queued", 1, None)
    assert "lease expired" in row.last_error
    assert sent_ids(broker) == [batch_ids[0]]
    # And a worker can claim it again
    assert claim is not None


def test_the_last_allowed_failure_fails_the_batch_and_its_issues_with_the_reason(
    sessions: sessionmaker[Session], test_settings: Settings, app: Celery
) -> None:
    # Given a one-batch run whose batch already failed twice and whose lease expired again
    run_id, batch_ids = planned_run(sessions, test_settings, n=10)
    assert len(batch_ids) == 1
    expire(sessions, batch_ids[0], failures=test_settings.batch_max_failures - 1)

    # When the reaper passes
    report = reap_once(sessions, app, test_settings)

    # Then the batch failed for good, every issue failed with the reason, and the run is closed
    assert report.failed == (batch_ids[0],)
    assert report.runs_finished == (run_id,)
    with transaction(sessions) as session:
        batch = session.execute(
            text("SELECT status, last_error FROM batches WHERE id = :id"), {"id": batch_ids[0]}
        ).one()
        issues = session.execute(
            text("SELECT status, reason FROM run_issues WHERE run_id = :r"), {"r": run_id}
        ).all()
        run_status = session.scalar(text("SELECT status FROM runs WHERE id = :r"), {"r": run_id})
    assert batch.status == "failed"
    assert batch.last_error.startswith(f"failed {test_settings.batch_max_failures} times")
    assert len(issues) == 10 and all(i.status == "failed" and i.reason == batch.last_error for i in issues)
    assert run_status == "failed"


def test_queued_batches_whose_messages_were_lost_are_sent_again_in_priority_order(
    sessions: sessionmaker[Session], test_settings: Settings, app: Celery, broker: redis.Redis
) -> None:
    # Given a run whose batches were sent a while ago, and a broker that lost everything
    run_id, batch_ids = planned_run(sessions, test_settings)
    sent_minutes_ago(sessions, run_id, 5)
    broker.flushall()
    assert broker_backlog(app) == 0

    # When the reaper passes
    report = reap_once(sessions, app, test_settings.model_copy(update={"reaper_interval_s": 60.0}))

    # Then every batch is sent again, highest priority first, and noted as sent
    assert report.resent == tuple(batch_ids)
    assert sent_ids(broker) == batch_ids
    # And the next pass does not send them again
    assert reap_once(sessions, app, test_settings).resent == ()


def test_queued_batches_behind_a_backlog_are_left_alone(
    sessions: sessionmaker[Session], test_settings: Settings, app: Celery, broker: redis.Redis
) -> None:
    # Given a run whose batches were sent 5 minutes ago and are still waiting in the broker
    run_id, batch_ids = planned_run(sessions, test_settings)
    sent_minutes_ago(sessions, run_id, 5)
    for batch_id in batch_ids:
        app.send_task("budgetq.process_batch", args=[batch_id])

    # When the reaper passes (resending after 10 minutes when the broker holds messages)
    report = reap_once(sessions, app, test_settings.model_copy(update={"requeue_after_s": 600.0}))

    # Then nothing is sent twice
    assert report.resent == ()
    assert sorted(sent_ids(broker)) == sorted(batch_ids)


def test_queued_batches_of_a_stopped_run_fail_with_the_runs_reason(
    sessions: sessionmaker[Session], test_settings: Settings, app: Celery
) -> None:
    # Given a run stopped by its spend cap while one batch was still queued (a late follow-up)
    run_id, batch_ids = planned_run(sessions, test_settings)
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE runs SET status = 'stopped', stop_reason = 'spend cap reached: …' WHERE id = :r"),
            {"r": run_id},
        )

    # When the reaper passes
    report = reap_once(sessions, app, test_settings)

    # Then its queued batches and their issues fail with the run's reason, and no task is sent for them
    assert report.orphans_closed == len(batch_ids)
    assert not set(report.resent) & set(batch_ids)
    with transaction(sessions) as session:
        reasons = session.scalars(
            text("SELECT DISTINCT reason FROM run_issues WHERE run_id = :r"), {"r": run_id}
        ).all()
        claimable = batch_store.claim(session, batch_ids[0], 60)
    assert reasons == ["spend cap reached: …"]
    assert claimable is None


def test_the_beat_schedule_runs_reap_on_the_scheduler_queue(test_settings: Settings) -> None:
    # Given a reaper interval of 15 s
    settings = test_settings.model_copy(update={"reaper_interval_s": 15.0})

    # When the scheduler's beat schedule is built
    entry = schedule(settings)["budgetq-reap"]

    # Then it sends REAP to the scheduler queue that often, and a late one expires unrun
    assert entry == beat_entry(settings)["budgetq-reap"]
    assert (entry["task"], entry["schedule"]) == (REAP, 15.0)
    assert entry["options"] == {"queue": "scheduler", "expires": 15.0}
