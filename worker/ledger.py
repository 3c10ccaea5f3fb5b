"""The ledger of one batch's attempts: each ``llm_calls`` row is one truth with its spend reservation.

``SpendGate`` opens an attempt's row (``pending``, its worst case as ``unknown_usd``) in the
transaction that reserves the attempt's spend, before the request is sent, and ``settle`` closes
both in one transaction after it: the reservation settled, released or kept, and the row written
with what the attempt did. Settling twice changes nothing (a reservation closes once, a row is
closed while pending), so the worker may settle again with the answer's results when the first
settlement could not be written. A worker that dies in between leaves the pending row and the held
reservation for the reaper to mark unknown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from budgetq.adapters.store import batches as store
from budgetq.adapters.store import calls
from budgetq.adapters.store import spend as spend_store
from budgetq.domain.calls import Attempt
from budgetq.domain.spend import Settlement, settlement_of

log = logging.getLogger("budgetq.worker")


@dataclass(frozen=True)
class Entry:
    """An attempt's row and the reservation it was written with."""

    call_id: int
    reservation: spend_store.Reservation | None


def settlement_of_attempt(attempt: Attempt) -> Settlement:
    """What an attempt's reply means for its reservation: settle, release or keep."""
    return settlement_of(attempt.http_status, attempt.usage is not None)


def close_reservation(session: Session, reservation: spend_store.Reservation, attempt: Attempt) -> Settlement:
    """Settle at the actual cost, release after an error reply, keep when the outcome is unknown; an
    unknown reservation (the reaper thought the worker gone) is settled too, now that the truth is in."""
    decision = settlement_of_attempt(attempt)
    if decision is Settlement.SETTLE:
        spend_store.settle(session, reservation, attempt.cost_usd, from_unknown=True)
    elif decision is Settlement.RELEASE:
        spend_store.release(session, reservation, from_unknown=True)
    else:
        spend_store.keep(session, reservation)
    return decision


class CallLedger:
    """The rows of one claimed batch's attempts, in the order they are sent (one thread at a time)."""

    def __init__(self, claim: store.Claim, estimated: int, counted: int | None, host: str) -> None:
        self.claim = claim
        self.estimated = estimated
        self.counted = counted
        self.host = host
        self._opened = 0
        self._last: Entry | None = None  # attempts of a batch go one after another
        self._unsent = False
        self._committed: int | None = None  # the row whose settlement is known to be committed

    def open(self, session: Session, reservation: spend_store.Reservation | None, worst: Decimal) -> None:
        """Write the next attempt's pending row, with its reservation (inside its transaction)."""
        self._opened += 1
        call_id = calls.open_attempt(
            session,
            self.claim,
            self._opened,
            reservation_id=None if reservation is None else reservation.id,
            worst_case_usd=worst,
            estimated_input=self.estimated,
            counted_input=self.counted,
            host=self.host,
        )
        self._last, self._unsent = Entry(call_id, reservation), True

    def discard(self, session: Session) -> None:
        """Delete the row of the attempt just opened: a later gate stopped it before it was sent."""
        if self._last is not None and self._unsent:
            calls.discard_unsent(session, self._last.call_id)
            self._last, self._unsent, self._opened = None, False, self._opened - 1

    def settle(self, session: Session, attempt: Attempt) -> int | None:
        """Close the last attempt's reservation and row in ``session``'s transaction; the row's id (None
        when no row was opened)."""
        entry, self._unsent = self._last, False
        if entry is None:
            return None
        if self._committed == entry.call_id:
            return entry.call_id  # closed already: settling again would change nothing, so ask nothing
        unknown = Decimal(0)
        if entry.reservation is not None and settlement_of_attempt(attempt) is Settlement.KEEP:
            unknown = entry.reservation.amount
        # The row first, the reservation last: a capped run's counter UPDATE locks the run's row until
        # the COMMIT, so nothing else may run between them.
        calls.close_attempt(session, entry.call_id, self.claim, attempt, unknown)
        if entry.reservation is not None:
            close_reservation(session, entry.reservation, attempt)
        return entry.call_id

    def committed(self) -> None:
        """The last attempt's settlement was committed: settling it again with the answer's results
        needs no statement."""
        if self._last is not None:
            self._committed = self._last.call_id
