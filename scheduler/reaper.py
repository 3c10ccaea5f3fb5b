"""The reaper: rebuilds the queue from PostgreSQL, every ``reaper_interval_s`` (Celery beat, task REAP).

One pass, in order:
1. running batches whose lease expired go back to the queue with one more failure (or end
   ``failed`` at ``batch_max_failures``) and are sent again at once; the spend their calls reserved
   stays counted (the outcome is unknown) but is no longer waited for, and their pending
   ``llm_calls`` rows are marked ``unknown``;
2. queued batches nobody claimed for a while are sent again (their message may be lost: Redis
   flushed or restarted empty); with the broker's queue empty that is after two intervals;
3. synchronous spend reservations nothing settled are given up: held past
   ``unknown_reservation_ttl_s`` become unknown (no longer waited for), unknown that long are released;
4. queued batches of stopped runs end ``failed`` with the run's reason;
5. running runs whose batches are all terminal are closed.

``reap_once`` is the whole pass as a function (tests call it directly); ``register`` puts it on a
Celery app as the REAP task and ``beat_entry`` schedules it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.observability.metrics import observe_lease_expiry
from budgetq.adapters.queue.celery_app import LLM_QUEUE, PROCESS_BATCH, REAP, SCHEDULER_QUEUE
from budgetq.adapters.store import calls, stale_reservations
from budgetq.adapters.store import reaper as store
from budgetq.adapters.store import spend as spend_store
from budgetq.adapters.store.engine import ProcessSessions, transaction
from budgetq.adapters.store.runs import mark_enqueued
from budgetq.domain.reaper import ReapReport, requeue_after, verdict
from budgetq.domain.statuses import BatchStatus
from budgetq.settings import Settings

log = logging.getLogger("budgetq.reaper")


def broker_backlog(app: Celery, queue: str = LLM_QUEUE) -> int | None:
    """Messages waiting in the broker's ``queue`` (0 when it does not exist); None if unknown."""
    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except conn.channel_errors:
                return 0  # the queue is gone: flushed, or the broker restarted empty
    except Exception as exc:  # noqa: BLE001 - any broker trouble means "don't know"
        log.warning("reaper: cannot read the broker's backlog: %s", exc)
        return None


def _send(app: Celery, sessions: sessionmaker[Session], batch_ids: Sequence[int]) -> tuple[int, ...]:
    """Send batch tasks by name; note the ones sent even when the broker fails part-way."""
    sent: list[int] = []
    try:
        for batch_id in batch_ids:
            app.send_task(PROCESS_BATCH, args=[batch_id])
            sent.append(batch_id)
    finally:
        if sent:
            with transaction(sessions) as session:
                mark_enqueued(session, sent)
    return tuple(sent)


def reap_once(sessions: sessionmaker[Session], app: Celery, settings: Settings) -> ReapReport:
    """One pass of the reaper (see the module docstring); returns what it did."""
    with transaction(sessions) as session:
        verdicts = [verdict(lease, settings.batch_max_failures) for lease in store.expired_leases(session)]
        store.apply_verdicts(session, verdicts)
        # Their workers are gone: what those calls reserved stays counted, but is no longer in flight;
        # their pending rows become unknown (maybe billed), their worst case kept in the cost views.
        expired = [v.batch_id for v in verdicts]
        spend_store.abandon_held(session, expired)
        calls.mark_unknown(session, expired)
    observe_lease_expiry("reaper", len(verdicts))
    for v in verdicts:
        log.warning("reaper: batch %s %s: %s", v.batch_id, v.status.value, v.reason)
    requeued = _send(app, sessions, [v.batch_id for v in verdicts if v.status is BatchStatus.QUEUED])
    wait = requeue_after(settings.requeue_after_s, settings.reaper_interval_s, broker_backlog(app))
    with transaction(sessions) as session:
        unclaimed = store.unclaimed_queued(session, wait)
    resent = _send(app, sessions, unclaimed)
    if resent:
        log.warning("reaper: sent %d queued batches again (unclaimed for %.0fs)", len(resent), wait)
    with transaction(sessions) as session:
        # Reservations nothing will settle must not hold a capped run forever.
        unknown, released = stale_reservations.expire_stale(session, settings.unknown_reservation_ttl_s)
        calls.mark_unknown_reserved(session, unknown)
    if unknown or released:
        log.warning(
            "reaper: %d spend reservations held past %.0fs given up as unknown, %d unknown ones released",
            len(unknown),
            settings.unknown_reservation_ttl_s,
            released,
        )
    with transaction(sessions) as session:
        orphans = store.close_orphans(session)
        finished = store.finish_done_runs(session)
    return ReapReport(
        requeued=requeued,
        failed=tuple(v.batch_id for v in verdicts if v.status is BatchStatus.FAILED),
        resent=resent,
        orphans_closed=orphans,
        runs_finished=tuple(finished),
    )


def register(app: Celery, settings: Settings) -> None:
    """Register the REAP task on ``app`` (the scheduler's)."""
    sessions = ProcessSessions(settings, process="the scheduler")

    @app.task(name=REAP, ignore_result=True)  # type: ignore[untyped-decorator]
    def reap() -> dict[str, int]:
        """One reaper pass; returns counts for the log."""
        report = reap_once(sessions.get(), app, settings)
        return {
            "requeued": len(report.requeued),
            "failed": len(report.failed),
            "resent": len(report.resent),
            "orphans_closed": report.orphans_closed,
            "runs_finished": len(report.runs_finished),
        }


def beat_entry(settings: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule entry running REAP every ``reaper_interval_s`` (a late one expires unrun)."""
    return {
        "budgetq-reap": {
            "task": REAP,
            "schedule": settings.reaper_interval_s,
            "options": {"queue": SCHEDULER_QUEUE, "expires": settings.reaper_interval_s},
        }
    }
