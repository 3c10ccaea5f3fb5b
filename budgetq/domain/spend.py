"""Spend-cap arithmetic: what a call reserves, whether it fits a cap, and how an attempt settles.

A call reserves its worst-case cost before it is sent; the reservation counts against every cap
it falls under (its run's and the day's) until the attempt settles:

- the API answered with usage: the reservation becomes the actual cost (``SETTLE``);
- the API answered with an error status: error replies are not billed, it is given back (``RELEASE``);
- no reply, or a reply that broke off (connection dropped after sending, timeout, a stream cut
  mid-way, the process died): nobody knows what was billed, so it is kept (``KEEP``).

A request of a Message Batch (run mode batch-api) reserves the same worst case at the batch rate
when it is submitted; its result line is a known outcome, so it settles (usage) or is released (an
errored, expired or canceled request is not billed), whenever it is ingested.

The invariant the store enforces with a conditional UPDATE: spent + reserved <= cap, always.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from budgetq.domain.model_spec import Prices
from budgetq.domain.pricing import worst_case_cost


@dataclass(frozen=True)
class CapState:
    """One cap as it stands: who it belongs to, its limit (None: no cap), what is spent and reserved."""

    scope: str
    cap: Decimal | None
    spent: Decimal
    reserved: Decimal
    held: Decimal = Decimal(
        0
    )  # the part of ``reserved`` held by calls in flight (the rest: unknown outcomes)

    @property
    def committed(self) -> Decimal:
        """Spent plus reserved: what the cap must cover."""
        return self.spent + self.reserved


class Settlement(StrEnum):
    """What becomes of a reservation once its attempt is over."""

    SETTLE = "settle"
    RELEASE = "release"
    KEEP = "keep"


def reservation_for(input_tokens: int, max_tokens: int, prices: Prices, *, batch: bool = False) -> Decimal:
    """The worst-case cost of a call with ``input_tokens`` in and up to ``max_tokens`` out (``batch``:
    a request of a Message Batch, at the batch rate)."""
    return worst_case_cost(input_tokens, max_tokens, prices, batch)


def fits(state: CapState, needed: Decimal) -> bool:
    """True when reserving ``needed`` keeps spent + reserved within the cap (always, without a cap)."""
    return state.cap is None or state.committed + needed <= state.cap


def may_fit_later(state: CapState, needed: Decimal) -> bool:
    """True when ``needed`` would fit if the calls in flight settled at no cost: worth waiting for,
    rather than stopping the run (a cap limits spend, not how many calls run at once)."""
    if state.cap is None:
        return True
    return state.held > 0 and state.committed - state.held + needed <= state.cap


def reserving(state: CapState, amount: Decimal) -> CapState:
    """The cap after ``amount`` more is reserved by calls about to be sent (held: in flight)."""
    return replace(state, reserved=state.reserved + amount, held=state.held + amount)


def fitting_prefix(states: Sequence[CapState], amounts: Sequence[Decimal]) -> int:
    """How many of ``amounts``, reserved in order, fit every cap in ``states``. The first that does not
    fit ends the count, so a cheaper one behind it never takes the room before it (priority order)."""
    total = Decimal(0)
    for count, amount in enumerate(amounts):
        if not all(fits(reserving(state, total), amount) for state in states):
            return count
        total += amount
    return len(amounts)


def refusing(states: Sequence[CapState], reserved: Decimal, needed: Decimal) -> CapState:
    """The first cap that refuses ``needed`` once ``reserved`` is held, as it then stands."""
    for state in states:
        after = reserving(state, reserved)
        if not fits(after, needed):
            return after
    raise ValueError(f"{needed} fits every cap after {reserved} is reserved: nothing refuses it")


def worth_trying(room: Decimal | None, least: Decimal, most: int) -> int:
    """How many requests to take for one try at the caps: all ``most`` without a cap; else as many as
    ``room`` holds at ``least`` each at best, plus one whose refusal tells waiting from stopping."""
    if room is None or least <= 0:
        return most
    return min(most, max(0, int(room // least)) + 1)


def waiting_reason(state: CapState, needed: Decimal) -> str:
    """Why a batch waits for its cap: the figures, and what it waits for."""
    return (
        f"waiting for spend cap room ({state.scope}): spent {state.spent} + reserved {state.reserved} "
        f"+ needed {needed} > cap {state.cap}, of which {state.held} is held by calls in flight"
    )


def cap_reached_reason(state: CapState, needed: Decimal) -> str:
    """The reason recorded on a run stopped by a cap, with every figure."""
    unknown = state.reserved - state.held
    # Reservations of outcomes nobody knows stay counted until BUDGETQ_UNKNOWN_RESERVATION_TTL_S.
    of_which = f" (of which {unknown} of outcomes unknown)" if unknown > 0 else ""
    return (
        f"spend cap reached ({state.scope}): spent {state.spent} + reserved {state.reserved}{of_which} "
        f"+ needed {needed} > cap {state.cap}; raise the cap and reprocess the run's failed issues"
    )


def settlement_of(http_status: int | None, billed: bool) -> Settlement:
    """How an attempt settles: ``billed`` when the reply carried usage, ``http_status`` of the reply."""
    if billed:
        return Settlement.SETTLE
    if http_status is not None and http_status >= 400:
        return Settlement.RELEASE
    # No status (connection lost, timeout) or a 200 that broke off mid-stream: possibly billed.
    return Settlement.KEEP


def settlement_of_result(billed: bool) -> Settlement:
    """How a Message Batch request's reservation settles once its result line is read: a known outcome,
    so the actual cost when the result carries usage, else nothing (errored, expired, canceled)."""
    return Settlement.SETTLE if billed else Settlement.RELEASE


def overrun(reserved: Decimal, actual: Decimal) -> Decimal:
    """How much an actual cost exceeded its reservation (0 when the reservation held)."""
    return max(Decimal(0), actual - reserved)
