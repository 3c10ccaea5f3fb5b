"""Spend-cap arithmetic: reservations, the cap test, and how an attempt settles."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.pricing import Usage, cost_usd
from budgetq.domain.spend import (
    CapState,
    Settlement,
    cap_reached_reason,
    fits,
    fitting_prefix,
    may_fit_later,
    overrun,
    refusing,
    reservation_for,
    settlement_of,
    settlement_of_result,
    worth_trying,
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


def test_a_message_batch_request_reserves_its_worst_case_at_the_batch_rate() -> None:
    # Given a request of 10,000 input tokens and max_tokens 2,000 on the Message Batches API
    reserved = reservation_for(10_000, 2_000, PRICES, batch=True)

    # Then it reserves the synchronous worst case less the catalog's batch discount, and still covers
    # any usage the request can bill at the batch rate
    assert reserved == reservation_for(10_000, 2_000, PRICES) * (1 - PRICES.batch_discount)
    mixes = [Usage(10_000, 2_000, batch=True), Usage(0, 2_000, cache_creation_1h=10_000, batch=True)]
    assert all(cost_usd(u, PRICES) <= reserved for u in mixes)


def _cap(cap: str | None, spent: str = "0", reserved: str = "0", held: str = "0") -> CapState:
    return CapState(
        "run 1", None if cap is None else Decimal(cap), Decimal(spent), Decimal(reserved), Decimal(held)
    )


@pytest.mark.parametrize(
    ("caps", "amounts", "expected"),
    [
        ((_cap(None),), ("5", "5", "5"), 3),  # no cap: all
        ((_cap("10", spent="1"),), ("3", "3", "3", "3"), 3),  # 1 + 9 = 10 fits; the fourth does not
        ((_cap("10"), _cap("4")), ("3", "3"), 1),  # the smaller cap decides
        ((_cap("10"),), ("11", "1"), 0),  # a cheaper one never jumps ahead of one that does not fit
        ((_cap("10"),), (), 0),
    ],
)
def test_requests_are_reserved_in_order_while_every_cap_holds_them(
    caps: tuple[CapState, ...], amounts: tuple[str, ...], expected: int
) -> None:
    assert fitting_prefix(caps, [Decimal(a) for a in amounts]) == expected


def test_the_refusal_of_a_request_counts_the_ones_reserved_before_it_as_in_flight() -> None:
    # Given a run cap of 10 with 1 spent, and a day cap of 100, after 6 more were reserved for requests
    run, day = _cap("10", spent="1"), _cap("100")

    # When the next request needs 4
    refused = refusing((run, day), Decimal(6), Decimal(4))

    # Then the run's cap refuses it, as it stands with the 6 held by requests in flight: worth waiting for
    assert refused == CapState("run 1", Decimal(10), Decimal(1), Decimal(6), Decimal(6))
    assert may_fit_later(refused, Decimal(4))
    # And with nothing reserved before it, a request over what is left cannot fit even later
    assert not may_fit_later(refusing((run, day), Decimal(0), Decimal(10)), Decimal(10))
    with pytest.raises(ValueError, match="nothing refuses it"):
        refusing((run, day), Decimal(0), Decimal(1))


@pytest.mark.parametrize(
    ("room", "least", "most", "expected"),
    [
        (None, "1", 100, 100),  # no cap: as many as a Message Batch holds
        ("2.5", "1", 100, 3),  # two fit at best, and one more to learn whether to wait or stop
        ("0", "1", 100, 1),
        ("-1", "1", 100, 1),  # over the cap already (an overrun): one, to be refused with the figures
        ("1000", "1", 100, 100),
        ("5", "0", 100, 100),
    ],
)
def test_a_submitter_claims_no_more_than_the_caps_room_could_take(
    room: str | None, least: str, most: int, expected: int
) -> None:
    assert worth_trying(None if room is None else Decimal(room), Decimal(least), most) == expected


def test_a_message_batch_result_is_a_known_outcome() -> None:
    # A result line says what happened: billed (usage) settles, anything else was not billed
    assert settlement_of_result(True) is Settlement.SETTLE
    assert settlement_of_result(False) is Settlement.RELEASE
