"""PostgreSQL refuses connections for a while in the middle of a run."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from budgetq.adapters.store.engine import make_engine, make_sessions, sqlalchemy_url, transaction
from budgetq.domain.reaper import ReapReport
from tests.faults.conftest import Rig, assert_every_issue_ended_once, outcome, wait_until_settled
from tests.faults.tcp_proxy import TcpProxy

pytestmark = pytest.mark.faults


@pytest.fixture
def proxy(rig: Rig) -> Iterator[TcpProxy]:
    """A cuttable proxy in front of the rig's database; workers and the reaper connect through it."""
    url = make_url(sqlalchemy_url(rig.url))
    socket_dir = url.query.get("host")
    if socket_dir:
        target: str | tuple[str, int] = f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
    else:
        target = (url.host or "127.0.0.1", url.port or 5432)
    server = TcpProxy(target)
    server.start()
    proxied = url.set(host="127.0.0.1", port=server.port, query={}).render_as_string(hide_password=False)
    rig.env["BUDGETQ_DATABASE_URL"] = proxied
    engine = make_engine(proxied, pool_size=4)
    rig.reaper_sessions = make_sessions(engine)
    yield server
    server.stop()
    engine.dispose()


def test_a_database_outage_mid_run_loses_nothing_and_duplicates_nothing(
    rig: Rig, proxy: TcpProxy, reaper: list[ReapReport]
) -> None:
    # Given a 600-issue run on two workers, whose calls take a second
    run_id, batch_ids = rig.plan(600, "pg-outage")
    rig.worker(4)
    rig.worker(4)
    deadline = time.monotonic() + 60
    while outcome(rig.sessions, run_id).answered < 100:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    # When PostgreSQL refuses every connection for 6 s (longer than a lease) and then comes back
    proxy.stop()
    time.sleep(6)
    proxy.start()

    # Then the run completes: every issue answered exactly once or failed with a reason
    o = wait_until_settled(rig.sessions, run_id, timeout_s=90)
    assert_every_issue_ended_once(o)
    assert o.issues == 600
    # And the outage was felt: leases expired or messages were lost, and the reaper recovered them
    assert any(r.requeued or r.resent for r in reaper)
    print(o)


# --- an outage that begins after calls were sent: their answers are paid for -----------------------


def _cut_while_answers_are_in_flight(
    rig: Rig, proxy: TcpProxy, run_id: int, seconds: float
) -> tuple[float, float]:
    """Wait until calls are in flight (sent, answers not yet out), cut PostgreSQL for ``seconds``;
    return when it was cut and when it came back (Unix times, the stand-in's clock)."""
    deadline = time.monotonic() + 60
    while True:
        now = time.time()
        in_flight = [
            e
            for e in rig.standin.log()
            if e["path"] == "/v1/messages" and (e["responded_at"] or 0) > now + 0.5
        ]
        if outcome(rig.sessions, run_id).answered >= 40 and len(in_flight) >= 4:
            break
        assert time.monotonic() < deadline, "no calls in flight after 60 s"
        time.sleep(0.05)
    cut = time.time()
    proxy.stop()
    time.sleep(seconds)
    proxy.start()
    return cut, time.time()


def _paid_calls(rig: Rig) -> list[dict[str, Any]]:
    """The stand-in's answered Messages requests (each one billed)."""
    return [e for e in rig.standin.log() if e["path"] == "/v1/messages" and e["status"] == 200]


def _provenance(rig: Rig, run_id: int) -> tuple[list[str], Decimal, Decimal]:
    """The run's llm_calls request ids, the sum of their costs, and the run's settled spend."""
    with transaction(rig.sessions) as session:
        ids = list(session.scalars(text("SELECT request_id FROM llm_calls WHERE run_id = :r"), {"r": run_id}))
        cost = session.scalar(
            text("SELECT coalesce(sum(cost_usd), 0) FROM llm_calls WHERE run_id = :r"), {"r": run_id}
        )
        # The ledger's settled spend: an uncapped run keeps no counters on its row.
        spent = session.scalar(
            text(
                "SELECT coalesce(sum(actual_usd), 0) FROM spend_reservations "
                "WHERE run_id = :r AND status = 'settled'"
            ),
            {"r": run_id},
        )
    return ids, Decimal(cost), Decimal(spent)


def test_an_outage_that_ends_within_the_write_window_costs_no_second_call(
    rig: Rig, proxy: TcpProxy, reaper: list[ReapReport]
) -> None:
    # Given a 400-issue run on two workers whose calls take 2 s, with 15 s leases (renewed every 5 s,
    # so no lease can expire in a 6 s outage) and a 30 s window to write a paid answer
    rig.standin.config.latency_s = 2.0
    run_id, _ = rig.plan(400, "pg-outage-window")
    for _ in range(2):
        rig.worker(4, BUDGETQ_LEASE_SECONDS="15", BUDGETQ_RESULT_WRITE_RETRY_S="30")

    # When PostgreSQL refuses every connection for 6 s, starting while calls are in flight
    cut, back = _cut_while_answers_are_in_flight(rig, proxy, run_id, 6.0)

    # Then the run completes: every issue answered exactly once
    o = wait_until_settled(rig.sessions, run_id, timeout_s=120)
    assert_every_issue_ended_once(o)
    assert o.answered == o.issues == 400
    paid = _paid_calls(rig)
    # And answers were paid for while PostgreSQL was down (the case under test happened)
    during = [e for e in paid if cut < e["responded_at"] < back]
    assert len(during) >= 4, during
    # And no issue was sent in a second paid call: each batch was called once
    sent = Counter(i for e in paid for i in e["issue_ids"])
    assert len(sent) == 400 and max(sent.values()) == 1, sent.most_common(3)
    # And each call has exactly one llm_calls row, and the run's spend settled to what they cost
    ids, cost, spent = _provenance(rig, run_id)
    assert sorted(ids) == sorted(e["request_id"] for e in paid)
    assert spent == cost
    print(o, f"{len(during)} answers arrived during the outage")


def test_an_outage_that_outlasts_the_write_window_calls_those_batches_again(
    rig: Rig, proxy: TcpProxy, reaper: list[ReapReport]
) -> None:
    # Given the same run with 3 s leases and a write window of only 1 s
    run_id, _ = rig.plan(400, "pg-outage-past-window")
    for _ in range(2):
        rig.worker(4, BUDGETQ_RESULT_WRITE_RETRY_S="1")

    # When PostgreSQL refuses every connection for 6 s, starting while calls are in flight
    cut, back = _cut_while_answers_are_in_flight(rig, proxy, run_id, 6.0)

    # Then the run still completes with every issue answered exactly once
    o = wait_until_settled(rig.sessions, run_id, timeout_s=120)
    assert_every_issue_ended_once(o)
    assert o.answered == o.issues == 400
    # But answers that arrived with more than the window of outage left were dropped: their batches
    # were called again once their leases expired (paid twice), and the dropped calls have no
    # llm_calls row (only the workers' logs name them)
    paid = _paid_calls(rig)
    dropped = [e for e in paid if cut < e["responded_at"] < back - 1.5]
    assert dropped
    sent = Counter(i for e in paid for i in e["issue_ids"])
    twice = {i for i, n in sent.items() if n > 1}
    assert twice >= {i for e in dropped for i in e["issue_ids"]}
    ids, _, _ = _provenance(rig, run_id)
    assert not {e["request_id"] for e in dropped} & set(ids)
    assert any(r.requeued for r in reaper)
    print(o, f"{len(dropped)} paid answers dropped, {len(twice)} issues sent twice")
