"""What the reaper decides, as pure functions: PostgreSQL is the truth, Redis only carries hints.

- A running batch whose lease expired lost its worker (killed, or cut off from PostgreSQL): it goes
  back to the queue, counting a failure, or ends ``failed`` once it has failed ``max_failures`` times.
- A queued batch nobody claimed for a while may have lost its message (Redis flushed or restarted
  empty): it is sent again. Sending twice is harmless, since only one claim can win.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from budgetq.domain.settle import exhausted, exhausted_reason
from budgetq.domain.statuses import BatchStatus


@dataclass(frozen=True)
class ExpiredLease:
    """A running batch whose lease ran out."""

    batch_id: int
    run_id: int
    failures: int
    last_error: str | None
    lease_until: dt.datetime


@dataclass(frozen=True)
class Verdict:
    """What becomes of a batch whose lease expired: its new status, failure count and reason."""

    batch_id: int
    run_id: int
    status: BatchStatus
    failures: int
    reason: str


@dataclass(frozen=True)
class ReapReport:
    """What one pass of the reaper did."""

    requeued: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    resent: tuple[int, ...] = ()
    orphans_closed: int = 0
    runs_finished: tuple[int, ...] = field(default=())

    @property
    def anything(self) -> bool:
        """True when the pass changed something."""
        return bool(self.requeued or self.failed or self.resent or self.orphans_closed or self.runs_finished)


def verdict(lease: ExpiredLease, max_failures: int) -> Verdict:
    """Requeue the batch with one more failure, or fail it for good at ``max_failures``."""
    failures = lease.failures + 1
    expired = (
        f"lease expired at {lease.lease_until.isoformat(timespec='seconds')}: its worker died or lost "
        "PostgreSQL mid-call"
    )
    if exhausted(lease.failures, max_failures):
        reason = exhausted_reason(lease.failures, expired)
        if lease.last_error:
            reason += f"; the time before: {lease.last_error}"
        return Verdict(lease.batch_id, lease.run_id, BatchStatus.FAILED, failures, reason)
    return Verdict(lease.batch_id, lease.run_id, BatchStatus.QUEUED, failures, expired)


def requeue_after(requeue_after_s: float, interval_s: float, broker_backlog: int | None) -> float:
    """How long a queued batch may wait unclaimed before it is sent again.

    With messages waiting in the broker, a batch may simply be behind them: wait the full
    ``requeue_after_s``. With none waiting (``broker_backlog == 0``: drained, flushed or restarted
    empty), an unclaimed batch has no message: send it again after two reaper intervals.
    """
    if broker_backlog == 0:
        return min(requeue_after_s, 2 * interval_s)
    return requeue_after_s
