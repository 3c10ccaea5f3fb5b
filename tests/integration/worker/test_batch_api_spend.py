"""Spend caps on the batch-api path: the submitter reserves each request's worst case at the batch rate,
ingestion settles it to the result's cost, and a dead submitter leaves nothing held.

The submit and poll code runs in this process (the same code the Celery tasks run), against PostgreSQL,
Redis and the stand-in's Message Batches API, on a database of the test's own: a poll looks at every
Message Batch in its database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.llm.message_batches import MessageBatchesClient
from budgetq.adapters.store import spend_caps
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.standin.server import BatchBehaviour
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.spend import reservation_for
from budgetq.services.planning import plan_run
from budgetq.settings import Settings
from scheduler.reaper import reap_once
from tests.integration.pipeline import make_seed_set
from tests.integration.worker.conftest import OwnDatabase
from tests.integration.worker.inline import InlineQueue
from worker.batch_api.context import BatchApiContext
from worker.batch_api.poll import Poller
from worker.batch_api.submit import Submitter
from worker.resources import Resources

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@dataclass
class Rig:
    """A worker's batch-api side in this process, on the test's own database."""

    sessions: sessionmaker[Session]
    settings: Settings
    submitter: Submitter
    poller: Poller


@pytest.fixture
def rig(own_database: OwnDatabase, test_settings: Settings, standin: Any) -> Iterator[Rig]:
    """One-issue batches with a small ``max_tokens``, so a request's worst case is a few actual costs."""
    settings = test_settings.model_copy(
        update={
            "database_url": own_database.url,
            "max_issues_per_call": 1,
            "max_tokens_per_call": 1_024,
            "calibration": 1.35,
        }
    )
    api = BatchApiContext(Resources(settings, InlineQueue()))
    submitter = Submitter(api)
    yield Rig(own_database.sessions, settings, submitter, Poller(api, submitter))


def _one(sessions: sessionmaker[Session], sql: str, **params: object) -> Any:
    with transaction(sessions) as session:
        return session.execute(text(sql), params).one()


def _all(sessions: sessionmaker[Session], sql: str, **params: object) -> list[tuple[Any, ...]]:
    with transaction(sessions) as session:
        return [tuple(r) for r in session.execute(text(sql), params)]


def _batch_api_run(rig: Rig, issues: int, cap: Decimal | None) -> int:
    """A planned batch-api run of ``issues`` one-issue batches, with spend cap ``cap`` set on the run."""
    set_id = make_seed_set(rig.sessions, f"bapi-cap-{uuid.uuid4().hex[:8]}", issues)
    planned = plan_run(rig.sessions, rig.settings, set_id, kind="manual", api_mode="batch-api")
    assert planned.run_id is not None and len(planned.batch_ids) == issues
    with transaction(rig.sessions) as session:
        session.execute(
            text("UPDATE runs SET spend_cap_usd = :c WHERE id = :r"), {"c": cap, "r": planned.run_id}
        )
    return planned.run_id


def _least_worst_case(rig: Rig) -> Decimal:
    """The smallest worst case a request of these runs can reserve: no input, all of max_tokens out."""
    prices = prices_on(get_model(rig.settings.model), date.today())
    return reservation_for(0, 1_024, prices, batch=True)


def _spend(rig: Rig, run_id: int) -> dict[str, Any]:
    """Everything spend-related the run has in the database, in a stable order."""
    return {
        "run": _one(rig.sessions, "SELECT spent_usd, reserved_usd FROM runs WHERE id = :r", r=run_id),
        "day": _all(rig.sessions, "SELECT day, spent_usd, reserved_usd FROM daily_spend ORDER BY day"),
        "reservations": _all(
            rig.sessions,
            "SELECT id, batch_id, amount_usd, actual_usd, status FROM spend_reservations "
            "WHERE run_id = :r ORDER BY id",
            r=run_id,
        ),
        "calls": _all(
            rig.sessions,
            "SELECT id, batch_id, cost_usd FROM llm_calls WHERE run_id = :r ORDER BY id",
            r=run_id,
        ),  # fmt: skip
        "results": _all(
            rig.sessions,
            "SELECT issue_id, llm_call_id FROM results WHERE run_id = :r ORDER BY issue_id",
            r=run_id,
        ),  # fmt: skip
        "issues": _all(
            rig.sessions,
            "SELECT issue_id, status, reason FROM run_issues WHERE run_id = :r ORDER BY issue_id",
            r=run_id,
        ),  # fmt: skip
    }


def _within_cap(rig: Rig, run_id: int) -> None:
    spent, reserved, cap = _one(
        rig.sessions, "SELECT spent_usd, reserved_usd, spend_cap_usd FROM runs WHERE id = :r", r=run_id
    )
    assert spent + reserved <= cap, (spent, reserved, cap)


def _assert_settled_to_actual(rig: Rig, run_id: int) -> None:
    """Every request's reservation settled, once, to what its result cost; nothing is left reserved."""
    rows = _all(
        rig.sessions,
        "SELECT s.status, s.actual_usd, c.cost_usd FROM message_batch_requests q "
        "JOIN message_batches m ON m.id = q.message_batch_id "
        "JOIN spend_reservations s ON s.id = q.spend_reservation_id "
        "LEFT JOIN llm_calls c ON c.message_batch_id = m.api_id AND c.batch_id = q.batch_id "
        "WHERE m.run_id = :r",
        r=run_id,
    )
    assert rows and all(s == "settled" and a == c for s, a, c in rows), rows
    (reservations,) = _one(
        rig.sessions, "SELECT count(*) FROM spend_reservations WHERE run_id = :r", r=run_id
    )
    assert reservations == len(rows)
    with transaction(rig.sessions) as session:
        # The run's figures (from its counters with a cap, from the ledger without one)
        state = spend_caps.run_cap(session, run_id)
    spent, reserved = state.spent, state.reserved
    (billed,) = _one(rig.sessions, "SELECT sum(cost_usd) FROM llm_calls WHERE run_id = :r", r=run_id)
    assert (spent, reserved) == (billed, 0)


def test_a_capped_batch_api_run_submits_what_fits_waits_for_its_results_and_stops_at_the_cap(
    rig: Rig,
) -> None:
    # Given a batch-api run of 10 one-issue batches whose cap holds less than two requests' worst case,
    # and less than all ten cost
    least = _least_worst_case(rig)
    cap = (least * Decimal("2.75")).quantize(Decimal("0.000001"))
    run_id = _batch_api_run(rig, 10, cap)

    # When the submitter sends the run
    rig.submitter.submit(run_id)

    # Then one request went out with its worst case reserved at the batch rate, and the other nine wait
    # for the room it holds: back in the queue, unblamed, with the figures
    requests = _all(rig.sessions, "SELECT q.batch_id, s.amount_usd, s.status FROM message_batch_requests q "
                    "JOIN spend_reservations s ON s.id = q.spend_reservation_id WHERE s.run_id = :r",
                    r=run_id)  # fmt: skip
    assert len(requests) == 1 and requests[0][2] == "held" and least <= requests[0][1] <= cap
    waiting = _all(rig.sessions, "SELECT status, failures, last_error FROM batches WHERE run_id = :r "
                   "AND id <> :b", r=run_id, b=requests[0][0])  # fmt: skip
    assert len(waiting) == 9
    assert all(s == "queued" and f == 0 for s, f, _ in waiting)
    # (those tried carry why they wait; the others were not even claimed: the cap had no room for them)
    tried = [e for _, _, e in waiting if e is not None]
    assert tried and all(e.startswith(f"waiting for spend cap room (run {run_id}): ") for e in tried)
    assert all("is held by calls in flight" in e for e in tried)
    _within_cap(rig, run_id)

    # When the beat's polls ingest what ended and submit what waits, until nothing is left in flight
    for _ in range(30):
        rig.poller.poll()
        _within_cap(rig, run_id)
        (open_,) = _one(rig.sessions, "SELECT count(*) FROM message_batches WHERE run_id = :r "
                        "AND status NOT IN ('ingested', 'abandoned')", r=run_id)  # fmt: skip
        (status,) = _one(rig.sessions, "SELECT status FROM runs WHERE id = :r", r=run_id)
        if status != "running" and open_ == 0:
            break

    # Then the run stopped at its cap, having spent no more than it, every request's reservation
    # settled to what its result cost
    run = _one(rig.sessions, "SELECT status, stop_reason, spent_usd FROM runs WHERE id = :r", r=run_id)
    assert run.status == "stopped"
    assert run.stop_reason.startswith(f"spend cap reached (run {run_id}): spent ")
    assert 0 < run.spent_usd <= cap
    _assert_settled_to_actual(rig, run_id)
    # And every issue was answered once, or failed with the cap's reason: none silently dropped
    spend = _spend(rig, run_id)
    issues = spend["issues"]
    assert len(issues) == 10
    answered = [i for i, s, _ in issues if s == "answered"]
    failed = [r for _, s, r in issues if s == "failed"]
    assert answered and failed and len(answered) + len(failed) == 10
    assert set(failed) == {run.stop_reason}
    assert sorted(i for i, _ in spend["results"]) == sorted(answered)

    # When the same results are ingested again (a poller that died before marking them ingested)
    with transaction(rig.sessions) as session:
        session.execute(
            text("UPDATE message_batches SET status = 'in_progress' WHERE run_id = :r"), {"r": run_id}
        )
    rig.poller.poll()

    # Then nothing was recorded or settled twice
    assert _all(rig.sessions, "SELECT DISTINCT status FROM message_batches WHERE run_id = :r",
                r=run_id) == [("ingested",)]  # fmt: skip
    assert _spend(rig, run_id) == spend


def test_requests_that_are_not_billed_give_their_reservation_back(rig: Rig, standin: Any) -> None:
    # Given Message Batches whose requests all expire, and a batch-api run of 2 one-issue batches (each
    # fails after BUDGETQ_BATCH_MAX_FAILURES = 3 tries)
    standin.batches.set_behaviour(BatchBehaviour(expired_rate=1.0))
    run_id = _batch_api_run(rig, 2, None)

    # When they are submitted, and polled until the run ends
    rig.submitter.submit(run_id)
    held = _all(rig.sessions, "SELECT status FROM spend_reservations WHERE run_id = :r", r=run_id)
    for _ in range(10):
        rig.poller.poll()
        if _one(rig.sessions, "SELECT status FROM runs WHERE id = :r", r=run_id)[0] != "running":
            break

    # Then every reservation, held while its request was in flight, was released: none was billed
    assert held == [("held",), ("held",)]
    released = _all(rig.sessions, "SELECT status, actual_usd FROM spend_reservations WHERE run_id = :r",
                    r=run_id)  # fmt: skip
    assert released == [("released", 0)] * 6
    run = _one(rig.sessions, "SELECT spent_usd, reserved_usd, status FROM runs WHERE id = :r", r=run_id)
    assert tuple(run) == (0, 0, "failed")


class _Killed(BaseException):
    """The worker process dying mid-create: nothing after it runs, no handler catches it."""


def test_a_submitter_killed_mid_create_leaves_its_reservations_counted_but_not_held(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch-api run of 3 batches under a generous cap, and a submitter that dies in its create call
    run_id = _batch_api_run(rig, 3, _least_worst_case(rig) * 100)

    def die(self: MessageBatchesClient, entries: object) -> None:
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(MessageBatchesClient, "create", die)
        with pytest.raises(_Killed):
            rig.submitter.submit(run_id)
    lost = _all(rig.sessions, "SELECT id, amount_usd, status FROM spend_reservations WHERE run_id = :r",
                r=run_id)  # fmt: skip
    assert len(lost) == 3 and {s for _, _, s in lost} == {"held"}

    # When its submission's lease has passed and the next poll runs (then one more, to ingest)
    with transaction(rig.sessions) as session:
        session.execute(
            text("UPDATE message_batches SET lease_until = now() - interval '1 second' WHERE run_id = :r"),
            {"r": run_id},
        )
    rig.poller.poll()
    rig.poller.poll()

    # Then the create may have gone through: its reservations are kept as unknown (counted, not waited
    # for); the batches went out again with new reservations, settled to their results' cost
    states = dict(_all(rig.sessions, "SELECT id, status FROM spend_reservations WHERE run_id = :r", r=run_id))
    assert {states[i] for i, _, _ in lost} == {"unknown"}
    assert sorted(s for i, s in states.items() if i not in {i for i, _, _ in lost}) == ["settled"] * 3
    spent, reserved, status = _one(
        rig.sessions, "SELECT spent_usd, reserved_usd, status FROM runs WHERE id = :r", r=run_id
    )
    (billed,) = _one(rig.sessions, "SELECT sum(cost_usd) FROM llm_calls WHERE run_id = :r", r=run_id)
    assert status == "succeeded"
    assert (spent, reserved) == (billed, sum(a for _, a, _ in lost))


def test_a_result_read_after_the_reaper_gave_its_reservation_up_still_settles_it_once(rig: Rig) -> None:
    # Given a batch-api request in flight whose batch the reaper took back (its hold ran out, as when
    # no poller ran for six hours past the Message Batch's expiry): its reservation is given up as unknown
    run_id = _batch_api_run(rig, 1, None)
    rig.submitter.submit(run_id)
    with transaction(rig.sessions) as session:
        session.execute(
            text("UPDATE batches SET lease_until = now() - interval '1 second' WHERE run_id = :r"),
            {"r": run_id},
        )
    reap_once(rig.sessions, InlineQueue(), rig.settings)
    ((first, given_up),) = _all(rig.sessions, "SELECT id, status FROM spend_reservations WHERE run_id = :r",
                                r=run_id)  # fmt: skip
    assert given_up == "unknown"

    # When its result is ingested after all (and the batch, queued again, goes out in a new request)
    rig.poller.poll()
    rig.poller.poll()

    # Then the result settled the given-up reservation to its cost, once: nothing of it stays reserved
    settled = _all(
        rig.sessions,
        "SELECT s.status, s.actual_usd, c.cost_usd FROM spend_reservations s "
        "JOIN message_batch_requests q ON q.spend_reservation_id = s.id "
        "JOIN message_batches m ON m.id = q.message_batch_id "
        "JOIN llm_calls c ON c.message_batch_id = m.api_id AND c.batch_id = q.batch_id WHERE s.id = :s",
        s=first,
    )
    assert len(settled) == 1 and settled[0][0] == "settled" and settled[0][1] == settled[0][2]
    _assert_settled_to_actual(rig, run_id)
