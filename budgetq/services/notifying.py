"""Delivering notifications from the outbox, and noticing a nightly run that did not start.

Each delivery is claimed under a lease before its one HTTP try and marked after it, so a delivery task
run twice at once (a redelivered message, two beats) sends each notification to each target once. A
failed try is due again after an exponential, jittered delay kept in the row: no thread sleeps, no run
waits, and a scheduler restart loses nothing. (A process killed after the target answered and before the
mark is the one case of a second send: each message carries an ``Idempotency-Key`` for that.)
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.notify.sender import Attempt, post
from budgetq.adapters.notify.targets import Target
from budgetq.adapters.store import deliveries, outbox
from budgetq.adapters.store.engine import transaction
from budgetq.domain.cron_fires import CronFields, last_fire
from budgetq.domain.notifications import DeliveryStatus, body_for, retry_delay, retryable
from budgetq.settings import Settings

log = logging.getLogger("budgetq.notify")

CLAIM_LIMIT = 20


@dataclass(frozen=True)
class DeliveryReport:
    """What one delivery pass did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0


def _verdict(
    settings: Settings, attempt: Attempt, tries: int, jitter: float
) -> tuple[DeliveryStatus, float | None]:
    if attempt.delivered:
        return DeliveryStatus.SENT, None
    if retryable(attempt.http_status) and tries < settings.notify_max_attempts:
        delay = retry_delay(tries, settings.notify_retry_base_s, settings.notify_retry_max_s, jitter)
        return DeliveryStatus.PENDING, delay
    return DeliveryStatus.FAILED, None


def deliver_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    targets: Sequence[Target],
    *,
    jitter: Callable[[], float] = random.random,
) -> DeliveryReport:
    """Send every due notification to every target, one claimed try each; stops claiming after
    ``notify_poll_s`` × 3 so a slow target does not hold a scheduler thread for long."""
    if not targets:
        return DeliveryReport()
    by_digest = {t.digest: t for t in targets}
    with transaction(sessions) as session:
        deliveries.open_deliveries(session, list(by_digest), settings.notify_max_age_s)
    # The lease outlives one try (its timeout) with room to mark it; a task that died is retaken after it.
    lease_s = settings.notify_timeout_s * 2 + 30
    stop_at = time.monotonic() + settings.notify_poll_s * 3
    sent = retrying = failed = 0
    while time.monotonic() < stop_at:
        with transaction(sessions) as session:
            claimed = deliveries.claim(session, list(by_digest), lease_s, CLAIM_LIMIT)
        if not claimed:
            break
        for c in claimed:
            target = by_digest[c.target]
            body = body_for(target.kind, c.notification_id, c.kind, c.payload)
            attempt = post(
                target, body, f"budgetq-notification-{c.notification_id}", settings.notify_timeout_s
            )
            status, delay = _verdict(settings, attempt, c.attempt, jitter())
            with transaction(sessions) as session:
                kept = deliveries.finish(
                    session, c, status, http_status=attempt.http_status, error=attempt.error, retry_in_s=delay
                )
            what = f"notification {c.notification_id} ({c.kind}) to {target.redacted}, try {c.attempt}"
            if not kept:
                log.warning("%s: its lease ran out before the try ended; another task owns it now", what)
            elif status is DeliveryStatus.SENT:
                sent += 1
                log.info("%s: sent", what)
            elif status is DeliveryStatus.PENDING:
                retrying += 1
                log.warning("%s: %s; trying again in %.1f s", what, attempt.error, delay)
            else:
                failed += 1
                log.error("%s: %s; given up (see `budgetq notifications`)", what, attempt.error)
    return DeliveryReport(sent, retrying, failed)


def watch_nightly(
    sessions: sessionmaker[Session], settings: Settings, fields: CronFields, now: dt.datetime
) -> list[str]:
    """Record a notification for each nightly set with no run for the night whose schedule fired more
    than ``nightly_start_window_s`` ago (and within a day); returns the sets' names."""
    fired = last_fire(fields, now)
    if fired is None:
        return []
    late = (now - fired).total_seconds()
    if late < settings.nightly_start_window_s or late > settings.notify_max_age_s:
        return []
    window = settings.nightly_start_window_s
    with transaction(sessions) as session:
        missing = outbox.nightly_without_run(session, fired.date(), fired)
        new = [
            name
            for set_id, name in missing
            if outbox.record_nightly_missed(session, set_id, name, fired.date(), fired, window)
        ]
    for name in new:
        log.error("nightly set %s has no run for %s (the schedule fired at %s)", name, fired.date(), fired)
    return [name for _, name in missing]
