"""The cost in USD of a usage record, in exact Decimal arithmetic.

Rates are per million tokens (``budgetq.domain.catalog.Prices``); a cost is rounded to the
micro-dollar once, at the end, so sums of many calls do not drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from budgetq.domain.model_spec import Prices

MICRO_USD = Decimal("0.000001")
_PER_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Usage:
    """Billed token counts of one call, as the Messages API reports them.

    ``input_tokens`` is ``usage.input_tokens``: only the uncached input. Cache writes
    (5-minute and 1-hour) and cache reads are counted separately. ``batch`` marks the
    Message Batches API tier.
    """

    input_tokens: int
    output_tokens: int
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0
    cache_read: int = 0
    batch: bool = False

    def __post_init__(self) -> None:
        counts = (
            self.input_tokens,
            self.output_tokens,
            self.cache_creation_5m,
            self.cache_creation_1h,
            self.cache_read,
        )
        if any(count < 0 for count in counts):
            raise ValueError(f"token counts must be >= 0, got {self}")

    @property
    def total_input_tokens(self) -> int:
        """All input tokens of the request: uncached, cache writes and cache reads."""
        return self.input_tokens + self.cache_creation_5m + self.cache_creation_1h + self.cache_read


def _tier_rates(prices: Prices, total_input: int) -> tuple[Decimal, Decimal, Decimal]:
    """(input rate, output rate, cache-rate factor) for a request of ``total_input`` tokens."""
    threshold, long_input, long_output = prices.long_context_threshold, prices.long_input, prices.long_output
    is_long = threshold is not None and total_input > threshold
    if is_long and long_input is not None and long_output is not None:
        # The whole request moves to the long-context tier, and the cache multipliers apply on
        # top of its input rate.
        return long_input, long_output, long_input / prices.input
    return prices.input, prices.output, Decimal(1)


def tier_factor(prices: Prices, batch: bool) -> Decimal:
    """The share of the list rates a request pays: less the batch discount on the Message Batches API."""
    return 1 - prices.batch_discount if batch else Decimal(1)


def _finish(rated: Decimal, batch: bool, prices: Prices, rounding: str) -> Decimal:
    cost = rated / _PER_MILLION * tier_factor(prices, batch)
    return cost.quantize(MICRO_USD, rounding=rounding)


def cost_usd(usage: Usage, prices: Prices) -> Decimal:
    """What the call cost at list price, to the micro-dollar (ROUND_HALF_UP)."""
    input_rate, output_rate, cache_factor = _tier_rates(prices, usage.total_input_tokens)
    cache = (
        usage.cache_creation_5m * prices.cache_write_5m
        + usage.cache_creation_1h * prices.cache_write_1h
        + usage.cache_read * prices.cache_read
    )
    rated = usage.input_tokens * input_rate + usage.output_tokens * output_rate + cache * cache_factor
    return _finish(rated, usage.batch, prices, ROUND_HALF_UP)


def worst_case_cost(input_tokens: int, max_tokens: int, prices: Prices, batch: bool = False) -> Decimal:
    """An upper bound on a call's cost, for spend reservations: every input token at the dearest
    input rate and all ``max_tokens`` produced."""
    if input_tokens < 0 or max_tokens < 0:
        raise ValueError(f"token counts must be >= 0, got input={input_tokens}, max_tokens={max_tokens}")
    input_rate, output_rate, cache_factor = _tier_rates(prices, input_tokens)
    # Cache writes bill above the uncached rate (1.25x for 5m, 2x for 1h), so the uncached rate
    # alone is not a bound when the request writes to the cache.
    dearest_input = max(
        input_rate,
        prices.cache_write_5m * cache_factor,
        prices.cache_write_1h * cache_factor,
    )
    # Rounded up so the reservation stays a bound after quantizing.
    return _finish(input_tokens * dearest_input + max_tokens * output_rate, batch, prices, ROUND_CEILING)
