"""The reaper's decisions: requeue or fail an expired lease, and when to resend a queued batch."""

from __future__ import annotations

import datetime as dt

import pytest

from budgetq.domain.reaper import ExpiredLease, requeue_after, verdict
from budgetq.domain.statuses import BatchStatus

EXPIRED_AT = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)


def test_an_expired_lease_goes_back_to_the_queue_counting_a_failure() -> None:
    # Given a batch that failed once before and whose lease expired
    lease = ExpiredLease(
        batch_id=7, run_id=1, failures=1, last_error="call failed: 529", lease_until=EXPIRED_AT
    )

    # When the reaper judges it with at most 3 failures
    v = verdict(lease, max_failures=3)

    # Then it is queued again with 2 failures and says why
    assert (v.status, v.failures) == (BatchStatus.QUEUED, 2)
    assert "lease expired at 2026-11-29T03:00:00+00:00" in v.reason


def test_the_last_allowed_failure_ends_the_batch_failed_with_its_errors() -> None:
    # Given a batch with 2 failures whose lease expired again
    lease = ExpiredLease(7, 1, 2, "call failed: 529 overloaded_error", EXPIRED_AT)

    # When judged with at most 3 failures
    v = verdict(lease, max_failures=3)

    # Then it fails for good, naming the count, this expiry and the error before it
    assert (v.status, v.failures) == (BatchStatus.FAILED, 3)
    assert v.reason.startswith("failed 3 times; last: lease expired")
    assert "529 overloaded_error" in v.reason


@pytest.mark.parametrize(
    ("backlog", "expected"),
    [(None, 600.0), (25, 600.0), (0, 120.0)],
)
def test_an_empty_broker_means_unclaimed_batches_are_resent_soon(
    backlog: int | None, expected: float
) -> None:
    # Given a 600 s threshold and a 60 s reaper interval; then an empty broker shortens the wait
    assert requeue_after(600.0, 60.0, backlog) == expected
