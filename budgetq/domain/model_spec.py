"""What the catalog says of one model: its limits, token calibration and dated list prices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from budgetq.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Prices:
    """One dated version of a model's list prices, in USD per million tokens.

    When a request's total input (uncached + cache writes + cache reads) exceeds
    ``long_context_threshold``, every token of it is billed at the long-context rates:
    ``long_input`` / ``long_output``, and the cache rates scaled by ``long_input / input``
    (Anthropic's cache multipliers apply on top of the long-context input rate).
    """

    version: str
    effective_from: date
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    batch_discount: Decimal = Decimal("0.5")  # the fraction taken off every rate on the Batch API
    long_context_threshold: int | None = None
    long_input: Decimal | None = None
    long_output: Decimal | None = None

    def __post_init__(self) -> None:
        long_fields = (self.long_context_threshold, self.long_input, self.long_output)
        if any(f is None for f in long_fields) and any(f is not None for f in long_fields):
            raise ConfigurationError(
                f"prices {self.version}: long_context_threshold, long_input and long_output "
                "must be set together or not at all"
            )
        if not Decimal(0) <= self.batch_discount < Decimal(1):
            raise ConfigurationError(
                f"prices {self.version}: batch_discount must be in [0, 1), got {self.batch_discount}"
            )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's limits, token calibration and price history (sorted by ``effective_from``)."""

    name: str
    context_window: int
    max_output_tokens: int
    calibration: float
    prices: tuple[Prices, ...]
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.prices:
            raise ConfigurationError(f"model {self.name} has no prices")
        days = [p.effective_from for p in self.prices]
        if days != sorted(days) or len(set(days)) != len(days):
            raise ConfigurationError(
                f"model {self.name}: prices must be sorted by effective_from, one version per day"
            )
