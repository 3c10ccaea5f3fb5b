"""Workers killed outright (SIGKILL) or stopped gracefully (SIGTERM) in the middle of calls."""

from __future__ import annotations

import time
from collections import deque

import pytest
from sqlalchemy import text

from budgetq.adapters.store.engine import transaction
from budgetq.domain.reaper import ReapReport
from tests.faults.conftest import Rig, assert_every_issue_ended_once, outcome, sigkill, wait_until_settled

pytestmark = pytest.mark.faults


def in_flight(rig: Rig) -> int:
    """Calls the stand-in has received and not yet answered (it answers after its latency)."""
    now = time.time()
    return sum(
        1
        for e in rig.standin.log()
        if e["path"] == "/v1/messages" and (e["responded_at"] is None or e["responded_at"] > now)
    )


def test_ten_sigkills_during_a_2000_issue_run_lose_nothing_and_duplicate_nothing(
    rig: Rig, reaper: list[ReapReport]
) -> None:
    # Given a 2,000-issue run (200 batches of 10) on four workers of three threads whose calls take 5 s
    # (about 83 s of work at full strength, longer than the ~60 s the ten kills take)
    rig.standin.config.latency_s = 5.0
    run_id, batch_ids = rig.plan(2000, "sigkill", per_call=10)
    assert len(batch_ids) >= 200
    workers = deque((time.monotonic(), rig.worker(3)) for _ in range(4))
    started = time.monotonic()

    # When ten times the longest-running worker is killed while it has a call in flight, and a fresh one
    # is started in its place. With 4 x 3 threads, 10 calls in flight mean the victim holds at least one
    # (the other three workers hold at most 9); the last victim's calls (5 s) are answered by then.
    confirmed = 0
    for kill in range(10):
        born, victim = workers.popleft()
        time.sleep(max(0.0, born + 5.0 - time.monotonic(), 5.5 if kill else 0.0))
        deadline = time.monotonic() + 10
        while in_flight(rig) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        confirmed += in_flight(rig) >= 10
        sigkill(victim)
        workers.append((time.monotonic(), rig.worker(3)))
    last_kill = time.monotonic()
    assert outcome(rig.sessions, run_id).open_batches > 0, "the run ended before the tenth kill"

    # Then within 3 minutes of the last kill every batch is terminal
    o = wait_until_settled(rig.sessions, run_id, timeout_s=180)
    settled_after = time.monotonic() - last_kill
    # And every issue has exactly one result or failed with a reason; no result row is duplicated
    assert_every_issue_ended_once(o)
    assert o.issues == 2000
    # And the kills hit calls in flight: each confirmed kill cost at least one lease the reaper took back
    with transaction(rig.sessions) as session:
        expired = session.scalar(
            text("SELECT count(*) FROM batches WHERE run_id = :r AND failures > 0"), {"r": run_id}
        )
        expiries = session.scalar(
            text("SELECT coalesce(sum(failures), 0) FROM batches WHERE run_id = :r"), {"r": run_id}
        )
    assert confirmed >= 8, f"only {confirmed} of 10 kills found the victim busy"
    assert expired is not None and expiries is not None and expiries >= confirmed
    assert sum(len(r.requeued) + len(r.failed) for r in reaper) >= expired
    print(
        f"kills took {last_kill - started:.1f}s; settled {settled_after:.1f}s after the last kill; "
        f"{o}; {expired} batches reclaimed"
    )


def test_sigterm_mid_call_finishes_the_calls_in_flight_and_leaves_nothing_to_reclaim(
    rig: Rig, reaper: list[ReapReport]
) -> None:
    # Given a run of 6 batches whose calls take 2 s, and a worker running 4 of them
    rig.standin.config.latency_s = 2.0
    run_id, batch_ids = rig.plan(120, "sigterm", per_call=20)
    assert len(batch_ids) == 6
    worker = rig.worker(4)
    deadline = time.monotonic() + 30
    while in_flight(rig) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_flight(rig) == 4

    # When it is stopped gracefully mid-call, and a second worker is started
    started = time.monotonic()
    worker.terminate()
    rig.worker(4)
    code = worker.wait(30)
    stopped_in = time.monotonic() - started

    # Then it exited cleanly after finishing its 4 calls, and the second worker did the other 2
    assert code == 0
    o = wait_until_settled(rig.sessions, run_id, timeout_s=60)
    assert_every_issue_ended_once(o)
    assert o.answered == o.issues == 120
    # And no lease was left to expire: nothing was reclaimed, nothing was called twice
    with transaction(rig.sessions) as session:
        reclaimed = session.scalar(
            text("SELECT count(*) FROM batches WHERE run_id = :r AND failures > 0"), {"r": run_id}
        )
    assert reclaimed == 0
    calls = [e for e in rig.standin.log() if e["path"] == "/v1/messages"]
    assert len(calls) == len(batch_ids)
    print(f"worker stopped {stopped_in:.1f}s after SIGTERM")


def test_every_message_the_api_answered_has_a_row_after_repeated_sigkills(
    rig: Rig, reaper: list[ReapReport]
) -> None:
    # Given a 1,000-issue run (100 batches of 10) on two workers of three threads whose calls take 2 s
    rig.standin.config.latency_s = 2.0
    run_id, batch_ids = rig.plan(1000, "ledger", per_call=10)
    assert len(batch_ids) >= 100
    workers = deque(rig.worker(3) for _ in range(2))

    # When five times a worker is killed while every thread of both has a call at the stand-in (so no
    # thread is between writing its row and sending), and a fresh one takes its place
    hits = 0
    for kill in range(5):
        # The last victim's calls are still "in flight" at the stand-in until their replies go out.
        time.sleep(2.5 if kill else 0.0)
        deadline = time.monotonic() + 30
        while in_flight(rig) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        hits += in_flight(rig) >= 6
        sigkill(workers.popleft())
        workers.append(rig.worker(3))
    o = wait_until_settled(rig.sessions, run_id, timeout_s=180)
    assert_every_issue_ended_once(o)

    # Then every message the stand-in answered is one llm_calls row, answered or unknown, none pending
    with transaction(rig.sessions) as session:
        rows = dict(
            session.execute(
                text("SELECT status, count(*) FROM llm_calls WHERE run_id = :r GROUP BY status"),
                {"r": run_id},
            ).all()
        )
    answered = rig.standin.counts()["messages_answered"]
    assert hits >= 4, f"only {hits} of 5 kills found every thread mid-call"
    assert rows.get("ok", 0) + rows.get("unknown", 0) == answered, (rows, answered)
    assert rows.get("pending", 0) == 0, rows
    with transaction(rig.sessions) as session:
        unknown_usd, held = session.execute(
            text(
                "SELECT (SELECT unknown_usd FROM cost_by_run WHERE run_id = :r), "
                "(SELECT coalesce(sum(r.amount_usd), 0) FROM llm_calls c JOIN spend_reservations r "
                " ON r.id = c.reservation_id WHERE c.run_id = :r AND c.status = 'unknown' "
                " AND r.status = 'unknown')"
            ),
            {"r": run_id},
        ).one()
    # And the killed calls are in the cost views at their worst case, the reservation they held
    assert rows.get("unknown", 0) >= hits, rows
    assert unknown_usd == held > 0
    print(f"{answered} messages answered; rows {rows}; unknown worst case {unknown_usd} USD")
