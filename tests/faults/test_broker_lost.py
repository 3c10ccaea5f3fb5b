"""The broker loses everything mid-run: FLUSHALL twice, or Redis killed and started again empty.

PostgreSQL holds the truth; the reaper rebuilds the queue from it and the workers reconnect alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.ratelimit.limiter import redis_url_for_client
from budgetq.domain.reaper import ReapReport
from tests.faults.conftest import Rig, assert_every_issue_ended_once, outcome, wait_until_settled
from tests.faults.redis_server import RedisServer

pytestmark = pytest.mark.faults


def wait_for_progress(rig: Rig, run_id: int, answered: int, timeout_s: float = 30) -> None:
    """Wait until at least ``answered`` issues of the run are answered."""
    deadline = time.monotonic() + timeout_s
    while outcome(rig.sessions, run_id).answered < answered:
        assert time.monotonic() < deadline, f"no progress to {answered} answered issues"
        time.sleep(0.1)


def test_two_flushes_of_the_broker_mid_run_still_answer_every_issue_once(
    rig: Rig, reaper: list[ReapReport], broker_url: str
) -> None:
    # Given a 1,000-issue run (50 batches) on two workers
    run_id, batch_ids = rig.plan(1000, "flush")
    rig.worker(4)
    rig.worker(4)
    broker = redis.Redis.from_url(redis_url_for_client(broker_url))

    # When the broker is flushed (every queued message lost) twice while calls are in flight
    wait_for_progress(rig, run_id, 100)
    broker.flushall()
    wait_for_progress(rig, run_id, 400)
    broker.flushall()

    # Then the reaper sends the lost batches again, and every issue is answered exactly once
    o = wait_until_settled(rig.sessions, run_id, timeout_s=90)
    assert_every_issue_ended_once(o)
    assert o.answered == o.issues == 1000
    assert o.run_status == "succeeded"
    assert any(r.resent for r in reaper)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server this test may kill and restart."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def test_a_broker_restarted_empty_mid_run_is_rebuilt_and_workers_reconnect(
    rig: Rig, reaper: list[ReapReport], own_redis: RedisServer
) -> None:
    # Given a run on two workers whose broker (and rate-limit store) is a Redis we can kill
    rig.app = make_celery(rig.settings, own_redis.url)
    rig.env["BUDGETQ_REDIS_URL"] = own_redis.url
    run_id, batch_ids = rig.plan(600, "restart")
    rig.worker(4)
    rig.worker(4)

    # When Redis dies mid-run and comes back empty three seconds later
    wait_for_progress(rig, run_id, 100)
    own_redis.kill()
    time.sleep(3)
    own_redis.start()

    # Then the same workers reconnect by themselves and the run completes, every issue answered once
    o = wait_until_settled(rig.sessions, run_id, timeout_s=120)
    assert_every_issue_ended_once(o)
    assert o.answered == o.issues == 600
    assert all(w.poll() is None for w in rig.workers)
