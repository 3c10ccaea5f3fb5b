"""Notifications end to end: real worker and scheduler processes (with the beat), the stand-in through the
SDK, and a webhook receiver on 127.0.0.1. Each message arrives once per target: after a run, at each
spend threshold, through a receiver that fails three times, one that hangs, and a redelivered task."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.notify.targets import parse_targets
from budgetq.adapters.queue.celery_app import DELIVER_NOTIFICATIONS, make_celery
from budgetq.adapters.store import outbox
from budgetq.adapters.store.engine import transaction
from budgetq.services.notifying import deliver_due
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings
from tests.integration.notify.receiver import Received, Receiver
from tests.integration.pipeline import make_seed_set, run_on_workers, wait_for_run

# Retries in tenths of seconds and a beat every half second: the tests wait for seconds, not minutes.
FAST = {
    "BUDGETQ_NOTIFY_POLL_S": "0.5",
    "BUDGETQ_NOTIFY_RETRY_BASE_S": "0.2",
    "BUDGETQ_NOTIFY_RETRY_MAX_S": "1",
    "BUDGETQ_NOTIFY_TIMEOUT_S": "1",
}


def _wait_for(
    condition: Callable[[], bool], what: str, timeout_s: float = 60, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
            raise AssertionError(f"{what}: not within {timeout_s} s\n{tail}")
        time.sleep(0.2)


def _of_run(received: list[Received], run_id: int, event: str | None = None) -> list[Received]:
    """The JSON messages about ``run_id`` (of kind ``event`` when given)."""
    return [
        r
        for r in received
        if r.body.get("run_id") == run_id and (event is None or r.body.get("event") == event)
    ]


def _deliveries(sessions: sessionmaker[Session], run_id: int) -> list[Any]:
    with transaction(sessions) as session:
        return list(
            session.execute(
                text(
                    "SELECT n.kind, n.payload, d.status, d.attempts, d.last_error FROM notifications n "
                    "JOIN notification_deliveries d ON d.notification_id = n.id "
                    "WHERE n.run_id = :r ORDER BY n.id"
                ),
                {"r": run_id},
            )
        )


@pytest.mark.timeout(300)
def test_a_run_sends_one_run_ended_message_per_target_with_its_counts_and_cost(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    start_worker: Callable[..., Any],
    start_scheduler: Callable[..., Any],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    # Given a worker, and a scheduler whose targets are a Slack-style webhook and a JSON webhook
    set_id = make_seed_set(sessions, f"notify-end-{uuid.uuid4().hex[:8]}", 120)
    start_worker(concurrency=2)
    urls = f"slack+{receiver.url('/slack')}, json+{receiver.url('/json')}"
    start_scheduler(BUDGETQ_NOTIFY_URLS=urls, **FAST)
    settings = test_settings.model_copy(update={"max_issues_per_call": 20})

    # When a run of the set ends
    planned, progress = run_on_workers(sessions, settings, set_id)
    assert progress.status == "succeeded", progress
    run_id = planned.run_id
    assert run_id is not None

    # Then the JSON target gets exactly one run-ended message, with the run's counts and cost
    log = tmp_path / "scheduler-0.log"
    _wait_for(lambda: bool(_of_run(receiver.answered("/json"), run_id)), "the run-ended message", log=log)
    _wait_for(lambda: bool(receiver.answered("/slack")), "the Slack message", log=log)
    time.sleep(3)  # six more beats: nothing else may arrive
    messages = _of_run(receiver.requests("/json"), run_id)
    assert len(messages) == 1, messages
    body = messages[0].body
    assert body["event"] == "run_ended" and body["status"] == "succeeded"
    assert body["counts"] == progress.issues == {"answered": 120}
    assert Decimal(body["cost_usd"]) == progress.cost_usd > 0
    assert body["results_command"] == f"budgetq results --run {run_id}"
    assert sum(n for _, n in body["top_categories"]) <= 120 and body["top_categories"]
    # And the Slack target one text with the same facts
    slack = [r for r in receiver.requests("/slack") if f"run {run_id} " in r.body["text"]]
    assert len(slack) == 1, receiver.requests("/slack")
    assert "120 answered" in slack[0].body["text"]
    assert f"budgetq results --run {run_id}" in slack[0].body["text"]
    assert [row.status for row in _deliveries(sessions, run_id)] == ["sent", "sent"]


@pytest.mark.timeout(300)
def test_spend_alerts_go_out_once_per_threshold_of_the_runs_and_the_days_cap(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    start_worker: Callable[..., Any],
    start_scheduler: Callable[..., Any],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    # Given a database of its own (the day's spend starts at zero), small calls (2 issues each, so one
    # call's worst case is a few percent of the caps), a day's cap on the worker and a run's cap
    small = {"BUDGETQ_MAX_ISSUES_PER_CALL": "2", "BUDGETQ_MAX_TOKENS_PER_CALL": "400"}
    settings = test_settings.model_copy(update={"max_issues_per_call": 2, "max_tokens_per_call": 400})
    set_id = make_seed_set(sessions, f"notify-cap-{uuid.uuid4().hex[:8]}", 120)
    full = plan_run(sessions, settings, set_id, kind="manual", dry_run=True).forecast
    assert full is not None
    day_cap = (full.cost_usd * Decimal("0.8")).quantize(Decimal("0.000001"))
    start_worker(concurrency=1, BUDGETQ_DAILY_SPEND_CAP_USD=str(day_cap), **small)
    start_scheduler(BUDGETQ_NOTIFY_URLS=f"json+{receiver.url('/json')}", **small, **FAST)

    # When a run capped at 60% of the set's forecast (planning defers the rest) ends, and a second run of
    # the whole set then spends the day up to its cap
    first = plan_run(sessions, settings, set_id, kind="manual", spend_cap_usd=full.cost_usd * Decimal("0.6"))
    sender = make_celery(settings, settings.redis_url or "")
    assert first.run_id is not None
    enqueue(sender, sessions, first.batch_ids)
    ended = wait_for_run(sessions, first.run_id)
    second = plan_run(sessions, settings, set_id, kind="manual")
    assert second.run_id is not None
    enqueue(sender, sessions, second.batch_ids)
    stopped = wait_for_run(sessions, second.run_id)

    # Then the second run was stopped by the day's cap, which sent 50, 80, 95 and 100% once each
    assert stopped.status == "stopped", stopped
    log = tmp_path / "scheduler-0.log"

    def alerts() -> list[dict[str, Any]]:
        return [r.body for r in receiver.requests("/json") if r.body["event"] == "spend_threshold"]

    def of(scope: str) -> list[int]:
        return sorted(a["threshold"] for a in alerts() if a["scope"] == scope)

    day = f"day {time.strftime('%Y-%m-%d', time.gmtime())}"
    _wait_for(lambda: of(day) == [50, 80, 95, 100], f"the day's four alerts after {stopped}", log=log)
    # And the first run's cap sent each threshold its final spend reached, once
    reached = [t for t in (50, 80, 95, 100) if ended.cost_usd * 100 >= ended.spend_cap_usd * t]  # type: ignore[operator]
    assert 50 in reached, ended
    _wait_for(lambda: of(f"run {first.run_id}") == reached, "the first run's alerts", log=log)
    # And each run's end was told once: stopped with the cap's reason, succeeded with its deferrals
    _wait_for(
        lambda: len([r for r in receiver.requests("/json") if r.body["event"] != "spend_threshold"]) == 2,
        "two run ends",
    )
    time.sleep(2)
    assert of(day) == [50, 80, 95, 100] and of(f"run {first.run_id}") == reached
    stop = _of_run(receiver.requests("/json"), second.run_id, "run_stopped")
    assert len(stop) == 1 and "spend cap reached" in stop[0].body["reason"], stop
    assert _of_run(receiver.requests("/json"), first.run_id, "run_ended")[0].body["counts"] == ended.issues


def _events(sessions: sessionmaker[Session], n: int) -> list[int]:
    """``n`` notifications in the outbox (missed nights of made-up sets), as the watch writes them."""
    stamp = dt.datetime.now(dt.UTC)
    ids = []
    with transaction(sessions) as session:
        for i in range(n):
            set_id = -int(uuid.uuid4().int % 10**9) - i  # no such set: the row only needs a unique key
            assert outbox.record_nightly_missed(session, set_id, f"set{set_id}", stamp.date(), stamp, 60)
        ids = list(session.scalars(text("SELECT id FROM notifications ORDER BY id DESC LIMIT :n"), {"n": n}))
    return sorted(ids)


def _answered_ids(receiver: Receiver, path: str) -> list[int]:
    return sorted(r.body["id"] for r in receiver.answered(path))


@pytest.mark.timeout(300)
def test_a_target_failing_three_times_then_answering_gets_each_message_once_and_a_hang_holds_up_nothing(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    start_worker: Callable[..., Any],
    start_scheduler: Callable[..., Any],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    # Given a target that answers 500 three times before it works, and one that hangs twice (past the
    # 1 s timeout) before it works
    receiver.script["/flaky"] = [500, 500, 500]
    receiver.script["/hang"] = [("hang", 3.0), ("hang", 3.0)]
    urls = f"json+{receiver.url('/flaky')} json+{receiver.url('/hang')}"
    start_worker(concurrency=2)
    start_scheduler(BUDGETQ_NOTIFY_URLS=urls, **FAST)
    set_id = make_seed_set(sessions, f"notify-flaky-{uuid.uuid4().hex[:8]}", 60)
    settings = test_settings.model_copy(update={"max_issues_per_call": 20})

    # When a run ends while both misbehave
    started = time.monotonic()
    planned, progress = run_on_workers(sessions, settings, set_id)
    took = time.monotonic() - started
    run_id = planned.run_id
    assert run_id is not None

    # Then the run was not held up: it ended before the hanging target had answered anything
    assert progress.status == "succeeded", progress
    assert not receiver.answered("/hang"), (took, receiver.requests("/hang"))
    # And each target gets the run's end exactly once, after its failures (three 500s; two timeouts)
    log = tmp_path / "scheduler-0.log"
    _wait_for(lambda: bool(_of_run(receiver.answered("/flaky"), run_id)), "the flaky target's 200", log=log)
    _wait_for(lambda: bool(_of_run(receiver.answered("/hang"), run_id)), "the hanging target's 200", log=log)
    time.sleep(3)
    flaky = _of_run(receiver.requests("/flaky"), run_id)
    assert [r.status for r in flaky] == [500, 500, 500, 200], flaky
    hang = _of_run(receiver.requests("/hang"), run_id)
    # (a hung request is logged when its handler wakes, after the client gave up: so after the 200)
    assert sorted(r.status or 0 for r in hang) == [0, 0, 200], hang
    # And the outbox says so: sent, at the fourth and the third try, the last error kept
    rows = sorted(_deliveries(sessions, run_id), key=lambda r: r.attempts)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 3), ("sent", 4)], rows
    # And the scheduler's log names the targets in their redacted form only
    text_log = log.read_text()
    assert "answered HTTP 500" in text_log and "no answer within 1 s" in text_log
    assert "/flaky" not in text_log and "/hang" not in text_log


@pytest.mark.timeout(300)
def test_a_redelivered_delivery_task_does_not_double_a_message(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    start_scheduler: Callable[..., Any],
    receiver: Receiver,
    tmp_path: Path,
    broker_url: str,
) -> None:
    # Given ten notifications in the outbox and a scheduler process without a beat of its own
    # (BUDGETQ_NOTIFY_POLL_S far away), its target slow to answer (0.3 s a message)
    ids = _events(sessions, 10)
    receiver.script["/slow"] = []
    urls = f"json+{receiver.url('/slow')}"
    start_scheduler(BUDGETQ_NOTIFY_URLS=urls, BUDGETQ_NOTIFY_POLL_S="3600")
    targets = parse_targets(SecretStr(urls))
    settings = test_settings.model_copy(update={"notify_poll_s": 5.0, "notify_timeout_s": 5.0})
    original = receiver.server.RequestHandlerClass.do_POST  # type: ignore[union-attr,attr-defined]

    def slow(handler: Any) -> None:
        time.sleep(0.3)
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = slow  # type: ignore[union-attr,attr-defined]

    # When the delivery task is delivered five times at once to the scheduler (two threads), and this
    # process runs two more passes at the same time
    sender = make_celery(settings, broker_url)
    for _ in range(5):
        sender.send_task(DELIVER_NOTIFICATIONS)
    passes = [threading.Thread(target=deliver_due, args=(sessions, settings, targets)) for _ in range(2)]
    for p in passes:
        p.start()
    for p in passes:
        p.join(60)

    # Then every notification reached the target exactly once
    log = tmp_path / "scheduler-0.log"
    _wait_for(lambda: set(ids) <= set(_answered_ids(receiver, "/slow")), "all ten messages", log=log)
    time.sleep(2)
    mine = [i for i in _answered_ids(receiver, "/slow") if i in ids]
    assert mine == ids, mine
    assert len(receiver.requests("/slow")) == len(receiver.answered("/slow"))
