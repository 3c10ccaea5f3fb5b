"""The spend reservation of a guarded call is an upper bound on what the call can cost, across a
long-context price tier: for any usage within the call's limits, actual cost <= reservation.

A call's limits: all of ``max_tokens`` out at most, and at most the input the worker trusts its
estimate to (the exact count when it has one; else the estimate, low by no more than the count
margin, ``BUDGETQ_COUNT_TOKENS_MARGIN``) and never more than the window guard leaves.
"""

from __future__ import annotations

import math
import uuid
from datetime import date
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from budgetq.adapters.store.batches import Claim, ClaimedIssue
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.pricing import Usage, cost_usd
from budgetq.domain.spend import reservation_for
from budgetq.domain.tokens import Calibration
from worker.guarding import Guarded, guard

# Haiku 5.5 bills every token 5x once a request's input passes 100K tokens.
MODEL = "claude-haiku-5-5"
PRICES = prices_on(get_model(MODEL), date(2026, 11, 29))
MARGIN = 0.9
# One issue of about 1,250 estimated tokens; 66 to 88 of them put a batch's estimate around the tier.
TEXT = "orders.customer_id is NULL for rows loaded by the nightly export job; " * 70


def _claim(issues: int, max_tokens: int) -> Claim:
    return Claim(
        batch_id=1,
        run_id=1,
        token=uuid.uuid4(),
        priority=10,
        max_tokens=max_tokens,
        model=MODEL,
        mode="live",
        context_window=1_000_000,
        safe_utilization=0.75,
        calibration=1.0,
        failures=0,
        issues=tuple(ClaimedIssue(i + 1, 10, TEXT, 1_000) for i in range(issues)),
    )


@cache
def _guarded(issues: int, max_tokens: int) -> Guarded:
    # Tokenizing ~100K tokens is the slow part of an example: once per batch shape.
    return guard(_claim(issues, max_tokens), Calibration(1.0, confirmed=True), MARGIN)


@settings(max_examples=60, deadline=None)
@given(
    issues=st.integers(min_value=66, max_value=88),
    max_tokens=st.sampled_from([1, 1_024, 4_096, 32_000]),
    data=st.data(),
)
def test_no_usage_within_a_calls_limits_costs_more_than_its_reservation(
    issues: int, max_tokens: int, data: st.DataObject
) -> None:
    # Given a batch guarded on its estimate alone (far from the guard, calibration confirmed)
    g = _guarded(issues, max_tokens)
    assert not g.needs_count
    reserved = reservation_for(g.most_input(None), max_tokens, PRICES)

    # When the call bills any input the estimate may hide, split over the cache kinds, and any output
    most = min(math.floor(max(g.estimated, g.guarded) / MARGIN), g.limit - max_tokens)
    # (the dearest usages are near the top: drawn there half of the time)
    total = data.draw(st.integers(0, most) | st.integers(max(0, most - most // 10), most))
    cuts = sorted(data.draw(st.lists(st.integers(0, total), min_size=3, max_size=3)))
    parts = [cuts[0], cuts[1] - cuts[0], cuts[2] - cuts[1], total - cuts[2]]
    usage = Usage(parts[0], data.draw(st.integers(0, max_tokens)), parts[1], parts[2], parts[3])

    # Then it costs no more than was reserved, also when it crosses the 100K-token tier
    assert cost_usd(usage, PRICES) <= reserved


def test_a_call_estimated_under_the_tier_but_billed_over_it_is_covered() -> None:
    # Given a batch estimated just under 100K input tokens
    g = guard(_claim(78, 4_096), Calibration(1.0, confirmed=True), MARGIN)
    assert 90_000 < g.estimated < 100_000
    reserved = reservation_for(g.most_input(None), 4_096, PRICES)

    # When it bills 101K input (within the count margin of its estimate), all of it written to the
    # 1-hour cache, and all of max_tokens
    usage = Usage(0, 4_096, cache_creation_1h=101_000)

    # Then the reservation, priced at the tier that input falls in, covers it
    assert cost_usd(usage, PRICES) <= reserved
