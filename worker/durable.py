"""Writes that outlive a short PostgreSQL outage: what a worker learned from a call already paid for.

A call's answer is billed the moment it arrives. If PostgreSQL cannot be reached then, giving up
means the batch is called (and billed) again once its lease expires; so the worker keeps the answer
in memory and retries the write with full-jitter exponential backoff (at most 2 s apart) until
``result_write_retry_s`` has passed since the answer arrived. Only a connection that failed or
broke is retried, never a write PostgreSQL refused.

Why this is safe: every write that changes a batch stays fenced by the lease token (a write that
lands after the batch was handed to another worker changes nothing: LeaseLostError). Nobody can
take the batch over while the lease is valid, and the lease was renewed at most a third of it
before the outage began, so an outage shorter than two thirds of the lease and than the window
always ends with the write in place. A connection lost while COMMIT was in flight leaves the
outcome unknown: a retry first looks for the row the earlier try would have written
(``budgetq.adapters.store.recovery``), so nothing is written twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_before_delay, wait_random_exponential

from budgetq.adapters.store.engine import transaction
from budgetq.domain.calls import Attempt
from budgetq.settings import Settings

log = logging.getLogger("budgetq.worker")

T = TypeVar("T")

BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 2.0


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says PostgreSQL could not be reached or dropped the connection (not that it
    refused the write)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def retrying(
    window_s: float,
    since: dt.datetime,
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Retrying:
    """The tenacity policy of a write ``what``: retried while PostgreSQL is unreachable, and not after
    ``window_s`` seconds from ``since`` (when the answer arrived); the first try always happens."""
    remaining = window_s - (now() - since).total_seconds()

    def before_sleep(state: RetryCallState) -> None:
        if state.attempt_number == 1:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "%s: PostgreSQL unreachable (%s); keeping what the call returned and retrying the "
                "write for up to %.0fs more",
                what,
                first_line(exc),
                max(0.0, remaining - (state.seconds_since_start or 0.0)),
            )

    return Retrying(
        retry=retry_if_exception(unreachable),
        stop=stop_before_delay(max(0.0, remaining)),
        wait=wait_random_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_MAX_S),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def first_line(exc: BaseException | None) -> str:
    """The driver's own first line of an error (SQLAlchemy's wrapping adds the SQL and a link)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def write(
    sessions: sessionmaker[Session],
    settings: Settings,
    batch_id: int,
    attempt: Attempt,
    body: Callable[[Session], T],
    written: Callable[[Session], T | None] = lambda session: None,
) -> T:
    """Write what ``attempt`` returned: ``body`` in one transaction, retried while PostgreSQL is
    unreachable, up to ``result_write_retry_s`` after the answer arrived; a retry first asks
    ``written`` whether an earlier try committed after all, and returns that."""
    what = f"batch {batch_id}, call attempt {attempt.number}"
    for retry in retrying(settings.result_write_retry_s, attempt.finished_at, what):
        with retry, transaction(sessions) as session:
            if retry.retry_state.attempt_number > 1:
                earlier = written(session)
                if earlier is not None:
                    return earlier
            return body(session)
    raise AssertionError("tenacity ended without a result or an error")  # pragma: no cover
