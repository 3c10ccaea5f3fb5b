"""A plan's expected usage and cost: the fixed prompt is cached after the first call."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.forecast import cache_write_premium, expected_usage, forecast, issue_cost
from budgetq.domain.packing import PackItem, PackLimits, PlannedBatch
from budgetq.domain.pricing import Usage, cost_usd

PRICES = prices_on(get_model("claude-sonnet-4-6"), date(2026, 11, 29))
BATCHES = (
    PlannedBatch(priority=15, issue_ids=(1, 2), input_tokens=1_000, output_tokens=200),
    PlannedBatch(priority=10, issue_ids=(3,), input_tokens=500, output_tokens=100),
)


def test_the_first_call_writes_the_fixed_prompt_and_later_ones_read_it() -> None:
    assert expected_usage(BATCHES, 2_000) == [
        Usage(input_tokens=1_000, output_tokens=200, cache_creation_5m=2_000),
        Usage(input_tokens=500, output_tokens=100, cache_read=2_000),
    ]


def test_the_forecast_sums_the_calls_and_measures_them_against_the_window() -> None:
    # When two calls with a 2,000-token fixed prompt and max_tokens 1,000 are forecast on a 10,000 window
    fc = forecast(BATCHES, fixed_input_tokens=2_000, max_tokens=1_000, context_window=10_000, prices=PRICES)

    # Then utilization counts fixed + issues + max_tokens, and cost is the sum of both calls' costs
    assert (fc.utilization_min, fc.utilization_max) == (0.35, 0.4)
    assert fc.utilization_median == 0.375
    assert (fc.input_tokens, fc.cache_read_tokens, fc.output_tokens) == (5_500, 2_000, 300)
    assert fc.cost_usd == sum((cost_usd(u, PRICES) for u in expected_usage(BATCHES, 2_000)), Decimal(0))


def test_an_empty_plan_costs_nothing() -> None:
    fc = forecast((), fixed_input_tokens=2_000, max_tokens=1_000, context_window=10_000, prices=PRICES)
    assert fc.calls == 0 and fc.cost_usd == 0 and fc.utilization_max == 0.0


def test_an_issue_pays_its_tokens_and_its_share_of_a_call_s_cached_prompt() -> None:
    # Given an issue filling a tenth of a call's input and a 100-issue call limit
    limits = PackLimits(input_limit=10_000, output_limit=10_000, max_items=100)
    item = PackItem(1, 10, input_tokens=1_000, output_tokens=100)

    # Then its cost is its input and output at list price plus a tenth of one cache read of the prompt
    expected = (
        1_000 * PRICES.input + 100 * PRICES.output + Decimal("0.1") * 2_000 * PRICES.cache_read
    ) / 10**6
    assert issue_cost(item, limits, 2_000, PRICES) == expected


def test_the_cache_write_premium_is_the_write_rate_over_the_read_rate() -> None:
    assert cache_write_premium(1_000_000, PRICES) == PRICES.cache_write_5m - PRICES.cache_read


def test_a_batch_api_forecast_prices_the_same_calls_at_the_batch_rate() -> None:
    # When the two calls are forecast as requests of Message Batches
    fc = forecast(
        BATCHES, fixed_input_tokens=2_000, max_tokens=1_000, context_window=10_000, prices=PRICES, batch=True
    )

    # Then the first writes the prompt for an hour (as batch requests ask) and every call is billed at the
    # batch tier: Sonnet 4.6 at $3 / $15 per million, 1-hour write $6, read $0.30, half off
    assert expected_usage(BATCHES, 2_000, batch=True) == [
        Usage(input_tokens=1_000, output_tokens=200, cache_creation_1h=2_000, batch=True),
        Usage(input_tokens=500, output_tokens=100, cache_read=2_000, batch=True),
    ]
    first = (1_000 * 3 + 200 * 15 + 2_000 * 6) / Decimal(10**6)
    second = (500 * 3 + 100 * 15 + 2_000 * Decimal("0.3")) / Decimal(10**6)
    assert fc.cost_usd == (first + second) / 2 == Decimal("0.0108")
    # And the tokens and utilization are the synchronous forecast's
    sync = forecast(BATCHES, fixed_input_tokens=2_000, max_tokens=1_000, context_window=10_000, prices=PRICES)
    assert dataclasses.replace(fc, cost_usd=sync.cost_usd) == sync
    assert sync.cost_usd == Decimal("0.0171")


def test_the_batch_rate_is_the_catalog_s_discount() -> None:
    # Given prices whose batch discount is a quarter, not a half
    quarter = dataclasses.replace(PRICES, batch_discount=Decimal("0.25"))

    # Then a batch-api forecast, an issue's cost and the cache-write premium all take a quarter off
    fc = forecast(
        BATCHES, fixed_input_tokens=2_000, max_tokens=1_000, context_window=10_000, prices=quarter, batch=True
    )
    assert fc.cost_usd == Decimal("0.0216") * Decimal("0.75")
    limits = PackLimits(input_limit=10_000, output_limit=10_000, max_items=100)
    item = PackItem(1, 10, input_tokens=1_000, output_tokens=100)
    assert issue_cost(item, limits, 2_000, quarter, batch=True) == issue_cost(
        item, limits, 2_000, quarter
    ) * (Decimal("0.75"))
    assert cache_write_premium(1_000_000, quarter, batch=True) == (
        quarter.cache_write_1h - quarter.cache_read
    ) * Decimal("0.75")
