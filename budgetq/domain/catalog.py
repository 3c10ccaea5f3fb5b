"""The model catalog: context window, max output, calibration and dated list prices per model.

Sources (read 2026-11-29 from stored copies of the pages; re-check before relying on them):
- Prices: https://platform.claude.com/docs/en/about-claude/pricing (model table: base input,
  5m / 1h cache writes, cache hits, output) and each model's page
  https://platform.claude.com/docs/en/models/<model>/overview (the 5.x models, Haiku 5.5's
  100K-token price tier). Batch API: 50% off all usage (docs "Batch processing").
- Windows and max output: the same model overview pages.
- Sonnet 4 / 4.5 long context (1M beta): requests over 200K input tokens bill every token at
  $6 / $22.50 (Anthropic announcement, 2025-08-12). Opus 4.6 / Sonnet 4.6 carried the same
  2x input / 1.5x output premium until the 1M window went GA at flat prices on 2026-03-13.
- Fable 5.2 (released 2026-11-09): $8 / $40, cache read $0.20, 5m write $10 (launch notes);
  its 1h write is not in our sources and is set to the standard 2x input ($16).
- Tokenizer: Claude 4.7 and later models count ~30% more tokens for the same text than
  earlier ones (Haiku 5.5 page), hence the higher calibration for them.

Prices are USD per million tokens; ``effective_from`` is the release (or repricing) date.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from types import MappingProxyType

from budgetq.domain.model_spec import ModelSpec, Prices
from budgetq.errors import ConfigurationError

# Claude tokens per cl100k token, deliberately on the high side so the window guard errs safe;
# provenance refines it (tokens.learn_calibration).
CALIBRATION_CLASSIC = 1.35
CALIBRATION_NEW_TOKENIZER = 1.75


def _standard(
    effective_from: date,
    input_: str,
    output: str,
    cache_read: str,
    *,
    long_context: tuple[int, str, str] | None = None,
) -> Prices:
    # Every listed model uses the standard write multipliers (5m 1.25x, 1h 2x input), checked
    # against the published tables. Cache reads are not always 0.1x (Opus 5.5 and Fable 5.1
    # differ), so they are always given explicitly.
    base = Decimal(input_)
    threshold, long_in, long_out = long_context if long_context else (None, None, None)
    return Prices(
        version=effective_from.isoformat(),
        effective_from=effective_from,
        input=base,
        output=Decimal(output),
        cache_write_5m=base * Decimal("1.25"),
        cache_write_1h=base * 2,
        cache_read=Decimal(cache_read),
        long_context_threshold=threshold,
        long_input=Decimal(long_in) if long_in else None,
        long_output=Decimal(long_out) if long_out else None,
    )


_K200 = 200_000
_M1 = 1_000_000
_SONNET_LONG = (_K200, "6", "22.50")
_GA_1M = date(2026, 3, 13)

_ALL: tuple[ModelSpec, ...] = (
    # Fable: top tier. Mythos (same prices) is invitation-only and left out.
    ModelSpec(
        name="claude-fable-5-2",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        prices=(_standard(date(2026, 11, 9), "8", "40", "0.20"),),
    ),
    ModelSpec(
        name="claude-fable-5-1",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        prices=(_standard(date(2026, 9, 1), "10", "50", "0.25"),),
    ),
    ModelSpec(
        name="claude-fable-5",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        prices=(_standard(date(2026, 6, 9), "10", "50", "1"),),
    ),
    # Opus.
    ModelSpec(
        name="claude-opus-5-5",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        # Release day not in our sources; first listed on the pricing page by 2026-09-23.
        prices=(_standard(date(2026, 9, 23), "4", "20", "0.20"),),
    ),
    ModelSpec(
        name="claude-opus-5",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        prices=(_standard(date(2026, 7, 24), "5", "25", "0.50"),),
    ),
    ModelSpec(
        name="claude-opus-4-8",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        prices=(_standard(date(2026, 5, 28), "5", "25", "0.50"),),
    ),
    ModelSpec(
        name="claude-opus-4-7",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        prices=(_standard(date(2026, 4, 16), "5", "25", "0.50"),),
    ),
    ModelSpec(
        name="claude-opus-4-6",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_CLASSIC,
        prices=(
            _standard(date(2026, 2, 5), "5", "25", "0.50", long_context=(_K200, "10", "37.50")),
            _standard(_GA_1M, "5", "25", "0.50"),
        ),
    ),
    ModelSpec(
        name="claude-opus-4-5",
        context_window=_K200,
        max_output_tokens=64_000,
        calibration=CALIBRATION_CLASSIC,
        prices=(_standard(date(2025, 11, 24), "5", "25", "0.50"),),
        aliases=("claude-opus-4-5-20251101",),
    ),
    ModelSpec(
        name="claude-opus-4-1",
        context_window=_K200,
        max_output_tokens=32_000,
        calibration=CALIBRATION_CLASSIC,
        prices=(_standard(date(2025, 8, 5), "15", "75", "1.50"),),
        aliases=("claude-opus-4-1-20250805",),
    ),
    ModelSpec(
        name="claude-opus-4",
        context_window=_K200,
        max_output_tokens=32_000,
        calibration=CALIBRATION_CLASSIC,
        prices=(_standard(date(2025, 5, 22), "15", "75", "1.50"),),
        aliases=("claude-opus-4-0", "claude-opus-4-20250514"),
    ),
    # Sonnet.
    ModelSpec(
        name="claude-sonnet-5-5",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        # Release day not in our sources; priced by integrators from 2026-09-28.
        prices=(_standard(date(2026, 9, 28), "2", "10", "0.20"),),
    ),
    ModelSpec(
        name="claude-sonnet-5",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        prices=(_standard(date(2026, 6, 30), "2", "10", "0.20"),),
    ),
    ModelSpec(
        name="claude-sonnet-4-6",
        context_window=_M1,
        max_output_tokens=64_000,
        calibration=CALIBRATION_CLASSIC,
        prices=(
            _standard(date(2026, 2, 17), "3", "15", "0.30", long_context=_SONNET_LONG),
            _standard(_GA_1M, "3", "15", "0.30"),
        ),
    ),
    # Sonnet 4 / 4.5: 200K by default; the 1M beta (context-1m header) bills long context.
    ModelSpec(
        name="claude-sonnet-4-5",
        context_window=_K200,
        max_output_tokens=64_000,
        calibration=CALIBRATION_CLASSIC,
        prices=(_standard(date(2025, 9, 29), "3", "15", "0.30", long_context=_SONNET_LONG),),
        aliases=("claude-sonnet-4-5-20250929",),
    ),
    ModelSpec(
        name="claude-sonnet-4",
        context_window=_K200,
        max_output_tokens=64_000,
        calibration=CALIBRATION_CLASSIC,
        prices=(_standard(date(2025, 5, 22), "3", "15", "0.30", long_context=_SONNET_LONG),),
        aliases=("claude-sonnet-4-0", "claude-sonnet-4-20250514"),
    ),
    # Haiku.
    ModelSpec(
        name="claude-haiku-5-5",
        context_window=_M1,
        max_output_tokens=128_000,
        calibration=CALIBRATION_NEW_TOKENIZER,
        # Two published tiers split at 100K prompt tokens; the upper tier is 5x on every rate
        # (5m write $0.125 -> $0.625, cache read $0.01 -> $0.05), as the long-context rule gives.
        prices=(
            _standard(date(2026, 10, 7), "0.10", "0.50", "0.01", long_context=(100_000, "0.50", "2.50")),
        ),
    ),
    ModelSpec(
        name="claude-haiku-4-5",
        context_window=_K200,
        max_output_tokens=64_000,
        calibration=CALIBRATION_CLASSIC,
        prices=(_standard(date(2025, 10, 15), "1", "5", "0.10"),),
        aliases=("claude-haiku-4-5-20251001",),
    ),
    ModelSpec(
        name="claude-3-5-haiku",
        context_window=_K200,
        max_output_tokens=8_192,
        calibration=CALIBRATION_CLASSIC,
        prices=(_standard(date(2024, 10, 22), "0.80", "4", "0.08"),),
        aliases=("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"),
    ),
)

MODELS: Mapping[str, ModelSpec] = MappingProxyType({m.name: m for m in _ALL})

_BY_ALIAS: Mapping[str, ModelSpec] = MappingProxyType(
    {alias: m for m in _ALL for alias in m.aliases} | dict(MODELS)
)


def get_model(name: str) -> ModelSpec:
    """The catalog entry for a model name or alias (e.g. a dated snapshot id)."""
    try:
        return _BY_ALIAS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ConfigurationError(
            f"unknown model {name!r}; set BUDGETQ_MODEL to one of: {known} "
            "(or add the model to budgetq/domain/catalog.py)"
        ) from None


def prices_on(model: ModelSpec, day: date) -> Prices:
    """The price version in force on ``day``: the latest one with ``effective_from <= day``."""
    current: Prices | None = None
    for prices in model.prices:
        if prices.effective_from <= day:
            current = prices
    if current is None:
        first = model.prices[0].effective_from
        raise ConfigurationError(
            f"no prices for {model.name} on {day.isoformat()}: its first price version starts "
            f"{first.isoformat()}; use a later date or add the older prices to budgetq/domain/catalog.py"
        )
    return current
