"""What runs around every HTTP attempt of a worker's calls: the spend cap, then the rate limit.

``SpendGate`` reserves each attempt's worst-case cost against its run's and the day's caps
(PostgreSQL) before the attempt and settles it after; ``RedisRateLimiter`` (adapters/ratelimit)
waits for room in the shared window. ``AttemptGates`` chains them: if a later gate refuses, the
earlier ones are given back, so a refused attempt holds neither money nor rate.

The spend gate is shared by a process's threads; the batch an attempt belongs to is set per
thread with ``SpendGate.call`` around ``client.send``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.llm.client import Attempt, CallRequest
from budgetq.adapters.store import spend as spend_store
from budgetq.adapters.store.engine import transaction
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.spend import overrun, reservation_for
from worker import durable
from worker.ledger import CallLedger, close_reservation

log = logging.getLogger("budgetq.worker")


class Gate(Protocol):
    """A gate that can also give back what ``before_attempt`` took, when the attempt is not sent."""

    def before_attempt(self, request: CallRequest) -> None:
        """Take what the attempt needs, or raise."""

    def after_attempt(self, request: CallRequest, attempt: Attempt) -> None:
        """Settle what the attempt took."""

    def cancel(self, request: CallRequest) -> None:
        """Give back what ``before_attempt`` took: the attempt was not sent."""


class AttemptGates:
    """Several gates in order; a refusal gives back what the earlier ones took."""

    def __init__(self, *gates: Gate) -> None:
        self.gates = gates

    def before_attempt(self, request: CallRequest) -> None:
        """Pass every gate in order, or give back what was taken and raise."""
        passed: list[Gate] = []
        try:
            for gate in self.gates:
                gate.before_attempt(request)
                passed.append(gate)
        except BaseException:
            for gate in reversed(passed):
                gate.cancel(request)
            raise

    def after_attempt(self, request: CallRequest, attempt: Attempt) -> None:
        """Settle every gate, last first; one gate's failure neither skips the others nor escapes.

        The attempt has happened (perhaps paid): an error in one gate's bookkeeping (a garbled
        rate-limit header) must not leave the spend reservation held or lose the answer."""
        for gate in reversed(self.gates):
            try:
                gate.after_attempt(request, attempt)
            except Exception:  # noqa: BLE001 - see the docstring; the error is logged with its trace
                log.exception("%s could not settle attempt %s", type(gate).__name__, attempt.number)


@dataclass(frozen=True)
class SpendContext:
    """The run and batch an attempt is paid from, and the input tokens it may bill at most."""

    run_id: int
    batch_id: int
    input_tokens: int
    ledger: CallLedger | None = None  # writes each attempt's llm_calls row with its reservation


class SpendGate:
    """Reserve each attempt's worst-case cost before it is sent; settle, release or keep it after."""

    def __init__(
        self,
        sessions: Callable[[], sessionmaker[Session]],
        model: str,
        daily_cap: Decimal | None,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
        *,
        write_window_s: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self._spec = get_model(model)
        self._daily_cap = daily_cap
        self._today = today
        # How long a settlement is retried while PostgreSQL is unreachable (worker.durable).
        self._write_window_s = write_window_s
        self._local = threading.local()

    @contextmanager
    def call(
        self, run_id: int, batch_id: int, input_tokens: int, ledger: CallLedger | None = None
    ) -> Iterator[None]:
        """Pay this thread's attempts from ``run_id`` while the block runs; ``ledger`` writes each
        attempt's row in the transactions that reserve and settle its spend."""
        self._local.context = SpendContext(run_id, batch_id, input_tokens, ledger)
        try:
            yield
        finally:
            self._local.context = None

    def before_attempt(self, request: CallRequest) -> None:
        """Reserve the attempt's worst case; SpendCapExceededError if a cap cannot cover it."""
        context: SpendContext | None = getattr(self._local, "context", None)
        if context is None:
            return
        prices = prices_on(self._spec, self._today())
        amount = reservation_for(context.input_tokens, request.max_tokens, prices)
        with transaction(self._sessions()) as session:
            # The claim knows whether its run has a cap (fixed at planning): no need to read it again.
            ledger = context.ledger
            capped = None if ledger is None else ledger.claim.capped

            def open_row(held: spend_store.Reservation) -> None:
                # The row is committed with its reservation, before the request can be sent.
                if ledger is not None:
                    ledger.open(session, held, amount)

            reservation = spend_store.reserve(
                session,
                context.run_id,
                context.batch_id,
                amount,
                self._daily_cap,
                capped=capped,
                before_hold=open_row,
            )
        self._local.reservation = reservation

    def after_attempt(self, request: CallRequest, attempt: Attempt) -> None:
        """Settle at the actual cost, release after an error reply, keep when the outcome is unknown."""
        reservation: spend_store.Reservation | None = getattr(self._local, "reservation", None)
        self._local.reservation = None
        if reservation is None:
            return
        context: SpendContext | None = getattr(self._local, "context", None)
        ledger = None if context is None else context.ledger
        what = f"spend reservation {reservation.id}"
        try:
            # Retried through a short outage, so a paid call is counted as spent, not left held; a
            # reservation closes once only, so a retry after an unanswered COMMIT changes nothing.
            for retry in durable.retrying(self._write_window_s, attempt.finished_at, what):
                with retry, transaction(self._sessions()) as session:
                    if ledger is not None:
                        ledger.settle(session, attempt)  # the reservation and the attempt's row
                    else:
                        close_reservation(session, reservation, attempt)
            if ledger is not None:
                ledger.committed()
        except Exception:  # noqa: BLE001 - the call's answer must not be lost to a bookkeeping failure
            # The reservation stays held and the row pending, so it keeps counting against the caps (the
            # safe side); the worker settles both again with the answer, or the reaper marks them unknown.
            log.exception("spend reservation %s could not be settled; it stays held", reservation.id)
        excess = overrun(reservation.amount, attempt.cost_usd)
        if excess:
            log.warning(
                "spend reservation %s: the call cost %s, %s more than reserved (estimate too low)",
                reservation.id,
                attempt.cost_usd,
                excess,
            )

    def cancel(self, request: CallRequest) -> None:
        """Release the reservation of an attempt that was never sent."""
        reservation: spend_store.Reservation | None = getattr(self._local, "reservation", None)
        self._local.reservation = None
        if reservation is None:
            return
        context: SpendContext | None = getattr(self._local, "context", None)
        try:
            with transaction(self._sessions()) as session:
                spend_store.release(session, reservation)
                if context is not None and context.ledger is not None:
                    context.ledger.discard(session)
        except Exception:  # noqa: BLE001 - held is the safe side
            log.exception("spend reservation %s could not be released; it stays held", reservation.id)
