"""Spend-cap arithmetic: reservations, the cap test, and how an attempt settles."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from budgetq.catalog import get_model, prices_on
from budgetq.pricing import Usage, cost_usd
from budgetq.spend import (
    CapState,
    Settlement,
    cap_reached_reason,
    fits,
    may_fit_later,
    overrun,
    reservation_for,
    settlement_of,
)

PRICES = prices_on(get_model("claude-sonnet-4-6"), date(2026, 11, 29))


def test_a_reservation_covers_any_usage_the_call_can_produce() -> None:
    # Given a call of 10,000 input tokens and max_tokens 2,000
    reserved = reservation_for(10_000, 2_000, PRICES)

    # When its input is billed in any mix of uncached, cache writes and reads, with all output produced
    mixes = [
        Usage(10_000, 2_000),
        Usage(0, 2_000, cache_creation_5m=10_000),
        Usage(0, 2_000, cache_creation_1h=10_000),
        Usage(2_000, 2_000, cache_creation_1h=4_000, cache_read=4_000),
    ]

    # Then no actual cost exceeds the reservation
    assert all(cost_usd(u, PRICES) <= reserved for u in mixes)
    assert all(overrun(reserved, cost_usd(u, PRICES)) == 0 for u in mixes)


@pytest.mark.parametrize(
    ("cap", "spent", "reserved", "needed", "expected"),
    [
        (None, "100", "100", "100", True),
        ("10", "4", "5", "1", True),  # exactly at the cap
        ("10", "4", "5", "1.000001", False),
        ("10", "0", "0", "10.5", False),
        ("0", "0", "0", "0", True),
    ],
)
def test_a_reservation_fits_only_when_spent_plus_reserved_stays_within_the_cap(
    cap: str | None, spent: str, reserved: str, needed: str, expected: bool
) -> None:
    # Given a cap with what is spent and reserved
    state = CapState("run 1", None if cap is None else Decimal(cap), Decimal(spent), Decimal(reserved))

    # Then the new reservation fits exactly when the sum stays within the cap
    assert fits(state, Decimal(needed)) is expected


def test_the_stop_reason_states_every_figure() -> None:
    # Given a run at its cap
    state = CapState("run 7", Decimal("1.000000"), Decimal("0.600000"), Decimal("0.350000"))

    # When the reason is written
    reason = cap_reached_reason(state, Decimal("0.100000"))

    # Then it names the cap, spent, reserved and needed amounts
    assert reason.startswith("spend cap reached (run 7): spent 0.600000 + reserved 0.350000")
    assert "+ needed 0.100000 > cap 1.000000" in reason


@pytest.mark.parametrize(
    ("http_status", "billed", "expected"),
    [
        (200, True, Settlement.SETTLE),
        (429, False, Settlement.RELEASE),
        (529, False, Settlement.RELEASE),
        (400, False, Settlement.RELEASE),
        (None, False, Settlement.KEEP),  # connection dropped after sending, timeout
        (200, False, Settlement.KEEP),  # a stream that broke off mid-way
    ],
)
def test_an_attempt_settles_releases_or_keeps_its_reservation(
    http_status: int | None, billed: bool, expected: Settlement
) -> None:
    # Given how an attempt ended; then its reservation settles, is released or is kept
    assert settlement_of(http_status, billed) is expected


@pytest.mark.parametrize(
    ("spent", "reserved", "held", "needed", "expected"),
    [
        ("1", "9", "9", "1", True),  # the calls in flight hold the room; it frees when they settle
        ("9.5", "0.5", "0.5", "1", False),  # even with nothing in flight, spent + needed > cap
        ("1", "9", "0", "1", False),  # reserved by unknown outcomes only: nothing will free it
        ("1", "9", "4", "1", True),  # 4 in flight, 5 unknown: 1 + 5 + 1 <= 10 once those 4 settle
    ],
)
def test_a_refused_call_waits_only_when_calls_in_flight_hold_the_room(
    spent: str, reserved: str, held: str, needed: str, expected: bool
) -> None:
    # Given a cap of 10 with what is spent, reserved and held by calls in flight
    state = CapState("run 1", Decimal(10), Decimal(spent), Decimal(reserved), Decimal(held))

    # Then the call is worth waiting for only if it fits once the calls in flight settle at no cost
    assert may_fit_later(state, Decimal(needed)) is expected
