"""What a planned run is expected to cost, and how full its calls are, before anything is sent.

Expected usage per call: the fixed prompt (system prompt, tool, preface) is written to the prompt
cache by the first call and read from it by every later one; the issues' input is uncached; the
output is the issues' expected output, not ``max_tokens``. Prices are the list prices of the run's API
mode: a batch-api run's requests pay the Message Batches rate (``Prices.batch_discount`` off, applied
by ``budgetq.domain.pricing``) and write the prompt to the cache with the 1-hour TTL its requests ask for.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from budgetq.domain.model_spec import Prices
from budgetq.domain.packing import PackItem, PackLimits, PlannedBatch
from budgetq.domain.pricing import Usage, cost_usd, tier_factor

_PER_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Forecast:
    """A plan's calls: how full each is against the window, and the expected tokens and cost."""

    calls: int
    utilization_min: float
    utilization_median: float
    utilization_max: float
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    cost_usd: Decimal


def call_utilization(
    batch: PlannedBatch, fixed_input_tokens: int, max_tokens: int, context_window: int
) -> float:
    """The share of the window a call uses as the guard counts it: fixed prompt + issues + max_tokens."""
    return (fixed_input_tokens + batch.input_tokens + max_tokens) / context_window


def expected_usage(
    batches: Sequence[PlannedBatch], fixed_input_tokens: int, *, batch: bool = False
) -> list[Usage]:
    """Each call's expected usage: the fixed prompt cached after the first call, issues uncached;
    ``batch``: requests of Message Batches (the batch rate, the prompt written for 1 hour)."""
    first = fixed_input_tokens
    return [
        Usage(
            input_tokens=planned.input_tokens,
            output_tokens=planned.output_tokens,
            cache_creation_5m=first if seq == 0 and not batch else 0,
            cache_creation_1h=first if seq == 0 and batch else 0,
            cache_read=fixed_input_tokens if seq > 0 else 0,
            batch=batch,
        )
        for seq, planned in enumerate(batches)
    ]


def forecast(
    batches: Sequence[PlannedBatch],
    *,
    fixed_input_tokens: int,
    max_tokens: int,
    context_window: int,
    prices: Prices,
    batch: bool = False,
) -> Forecast:
    """Utilization (min, median, max) and the expected tokens and cost of ``batches`` (``batch``: sent as
    requests of Message Batches, at the batch rate)."""
    usages = expected_usage(batches, fixed_input_tokens, batch=batch)
    shares = [call_utilization(b, fixed_input_tokens, max_tokens, context_window) for b in batches]
    return Forecast(
        calls=len(batches),
        utilization_min=min(shares, default=0.0),
        utilization_median=statistics.median(shares) if shares else 0.0,
        utilization_max=max(shares, default=0.0),
        input_tokens=sum(u.total_input_tokens for u in usages),
        cache_read_tokens=sum(u.cache_read for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        cost_usd=sum((cost_usd(u, prices) for u in usages), Decimal(0)),
    )


def issue_cost(
    item: PackItem, limits: PackLimits, fixed_input_tokens: int, prices: Prices, *, batch: bool = False
) -> Decimal:
    """One issue's expected cost: its input and output at list price (at the batch rate with ``batch``),
    plus its share of a call's cached fixed prompt (the share of a batch it fills in its tightest
    dimension)."""
    share = max(item.input_tokens / limits.input_limit, item.output_tokens / limits.output_limit)
    if limits.max_items is not None:
        share = max(share, 1 / limits.max_items)
    rated = (
        item.input_tokens * prices.input
        + item.output_tokens * prices.output
        + Decimal(repr(share)) * fixed_input_tokens * prices.cache_read
    )
    return rated / _PER_MILLION * tier_factor(prices, batch)


def cache_write_premium(fixed_input_tokens: int, prices: Prices, *, batch: bool = False) -> Decimal:
    """What the first call pays to write the fixed prompt to the cache, over reading it (``batch``: at
    the batch rate, with the 1-hour write its requests ask for)."""
    write = prices.cache_write_1h if batch else prices.cache_write_5m
    return fixed_input_tokens * (write - prices.cache_read) / _PER_MILLION * tier_factor(prices, batch)
