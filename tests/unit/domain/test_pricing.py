"""Costs of usage records, checked to the micro-dollar against sums worked out by hand.

Rates are USD per million tokens, so each expected cost below is
(tokens x rate summed) / 1,000,000, then x 0.5 on the batch tier, rounded half-up to 1e-6.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.model_spec import Prices
from budgetq.domain.pricing import MICRO_USD, Usage, cost_usd, worst_case_cost

DAY = date(2026, 11, 29)
# Sonnet 4.5: 3 / 15, 5m write 3.75, 1h write 6, read 0.30; over 200K input: 6 / 22.50.
SONNET_45 = prices_on(get_model("claude-sonnet-4-5"), DAY)
HAIKU_45 = prices_on(get_model("claude-haiku-4-5"), DAY)  # 1 / 5
HAIKU_35 = prices_on(get_model("claude-3-5-haiku"), DAY)  # 0.80 / 4
HAIKU_55 = prices_on(get_model("claude-haiku-5-5"), DAY)  # 0.10 / 0.50, read 0.01; >100K: 0.50 / 2.50
OPUS_41 = prices_on(get_model("claude-opus-4-1"), DAY)  # 15 / 75, 5m 18.75, 1h 30, read 1.50
OPUS_46_BETA = prices_on(get_model("claude-opus-4-6"), date(2026, 3, 1))  # 5 / 25; >200K: 10 / 37.50
OPUS_46_GA = prices_on(get_model("claude-opus-4-6"), date(2026, 3, 13))  # 5 / 25, flat


TABLE = [
    # (name, prices, usage, expected)
    ("plain input and output", SONNET_45, Usage(1_000, 500), "0.010500"),  # 3000 + 7500
    ("cache read", SONNET_45, Usage(200, 300, cache_read=10_000), "0.008100"),  # 600 + 4500 + 3000
    ("5-minute cache write", SONNET_45, Usage(100, 50, cache_creation_5m=4_000), "0.016050"),  # +15000
    ("1-hour cache write", SONNET_45, Usage(100, 50, cache_creation_1h=4_000), "0.025050"),  # +24000
    ("batch tier halves everything", SONNET_45, Usage(1_000, 500, batch=True), "0.005250"),  # 10500 / 2
    (
        "batch tier with a cache write and a read",
        SONNET_45,
        Usage(100, 50, cache_creation_5m=4_000, cache_read=2_000, batch=True),
        "0.008325",  # (300 + 750 + 15000 + 600) / 2
    ),
    ("exactly 200K input stays standard", SONNET_45, Usage(200_000, 2_000), "0.630000"),  # 600000 + 30000
    ("over 200K bills all at long rates", SONNET_45, Usage(250_000, 2_000), "1.545000"),  # 1.5M + 45000
    (
        "cache reads count towards the long-context threshold",
        SONNET_45,
        Usage(1_000, 1_000, cache_read=199_500),
        "0.148200",  # 1000*6 + 1000*22.50 + 199500*0.30*2 = 6000 + 22500 + 119700
    ),
    (
        "long context, 1-hour write and batch together",
        SONNET_45,
        Usage(10_000, 1_000, cache_creation_1h=200_000, batch=True),
        "1.241250",  # (10000*6 + 1000*22.50 + 200000*6*2) / 2 = 2482500 / 2
    ),
    (
        "all five kinds of token",
        OPUS_41,
        Usage(1_000, 1_000, cache_creation_5m=1_000, cache_creation_1h=1_000, cache_read=1_000),
        "0.140250",  # 1000 * (15 + 75 + 18.75 + 30 + 1.50)
    ),
    ("one token at $1/M is one micro-dollar", HAIKU_45, Usage(1, 0), "0.000001"),
    ("0.8 micro-dollar rounds up", HAIKU_35, Usage(1, 0), "0.000001"),
    ("half a micro-dollar rounds half-up", HAIKU_45, Usage(1, 0, batch=True), "0.000001"),
    ("0.1 micro-dollar rounds to zero", HAIKU_55, Usage(1, 0), "0.000000"),
    ("Haiku 5.5 at 100K stays in the low tier", HAIKU_55, Usage(100_000, 1_000), "0.010500"),  # 10000 + 500
    (
        "Haiku 5.5 over 100K moves to the high tier",
        HAIKU_55,
        Usage(100_001, 1_000),
        "0.052501",  # 100001*0.50 + 1000*2.50 = 52500.5 -> 0.0525005 -> half-up
    ),
    (
        "Haiku 5.5 high-tier cache reads cost $0.05/M",
        HAIKU_55,
        Usage(1_000, 100, cache_read=150_000),
        "0.008250",  # 1000*0.50 + 100*2.50 + 150000*0.05
    ),
    ("Opus 4.6 before the 1M GA pays the premium", OPUS_46_BETA, Usage(300_000, 1_000), "3.037500"),
    ("Opus 4.6 after the 1M GA is flat", OPUS_46_GA, Usage(300_000, 1_000), "1.525000"),  # 1.5M + 25000
]


class TestCostUsd:
    @pytest.mark.parametrize(
        ("prices", "usage", "expected"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
    )
    def test_a_usage_record_costs_exactly_the_hand_computed_amount(
        self, prices: Prices, usage: Usage, expected: str
    ) -> None:
        # Given a usage record and its price version, when costed
        cost = cost_usd(usage, prices)

        # Then the amount is exact to the micro-dollar, and carries six decimals
        assert cost == Decimal(expected)
        assert cost.as_tuple().exponent == -6

    def test_a_usage_record_with_negative_counts_is_refused(self) -> None:
        with pytest.raises(ValueError):
            Usage(-1, 0)

    def test_total_input_counts_every_kind_of_input(self) -> None:
        usage = Usage(1, 2, cache_creation_5m=3, cache_creation_1h=4, cache_read=5)
        assert usage.total_input_tokens == 13


class TestWorstCaseCost:
    def test_the_bound_uses_the_dearest_input_rate_and_all_of_max_tokens(self) -> None:
        # Given Sonnet 4.5, whose dearest input rate is the 1-hour cache write ($6/M)
        # When reserving for 10K input and 1K output: 10000*6 + 1000*15
        assert worst_case_cost(10_000, 1_000, SONNET_45) == Decimal("0.075000")

    def test_the_bound_switches_to_long_context_rates(self) -> None:
        # 250000 * (6 * 2) + 1000 * 22.50 = 3000000 + 22500
        assert worst_case_cost(250_000, 1_000, SONNET_45) == Decimal("3.022500")

    def test_the_batch_bound_is_half(self) -> None:
        assert worst_case_cost(10_000, 1_000, SONNET_45, batch=True) == Decimal("0.037500")

    def test_the_bound_rounds_up_to_stay_a_bound(self) -> None:
        # One Haiku 5.5 input token at the 1-hour write rate is 0.2 micro-dollar
        assert worst_case_cost(1, 0, HAIKU_55) == MICRO_USD

    @given(
        data=st.data(),
        prices=st.sampled_from([SONNET_45, HAIKU_55, OPUS_41, OPUS_46_BETA]),
        total_input=st.integers(min_value=0, max_value=400_000),
        max_tokens=st.integers(min_value=0, max_value=64_000),
        batch=st.booleans(),
    )
    def test_no_split_of_the_input_over_cache_kinds_costs_more_than_the_bound(
        self, data: st.DataObject, prices: Prices, total_input: int, max_tokens: int, batch: bool
    ) -> None:
        # Given any split of the input into uncached, 5m/1h writes and reads, and any output <= max_tokens
        cuts = sorted(data.draw(st.lists(st.integers(0, total_input), min_size=3, max_size=3)))
        parts = [cuts[0], cuts[1] - cuts[0], cuts[2] - cuts[1], total_input - cuts[2]]
        output = data.draw(st.integers(0, max_tokens))
        usage = Usage(parts[0], output, parts[1], parts[2], parts[3], batch=batch)

        # Then the actual cost never exceeds the reservation
        assert cost_usd(usage, prices) <= worst_case_cost(total_input, max_tokens, prices, batch=batch)

    def test_negative_counts_are_refused(self) -> None:
        with pytest.raises(ValueError):
            worst_case_cost(-1, 0, SONNET_45)
