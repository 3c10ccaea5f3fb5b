"""The model catalog: entries, aliases, price versions and their invariants."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from budgetq.domain.catalog import (
    CALIBRATION_CLASSIC,
    CALIBRATION_NEW_TOKENIZER,
    MODELS,
    get_model,
    prices_on,
)
from budgetq.domain.model_spec import ModelSpec, Prices
from budgetq.errors import ConfigurationError
from budgetq.settings import Settings

REQUIRED = (
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-opus-4-1",
    "claude-opus-4-5",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
)


def _prices(day: date, **overrides: object) -> Prices:
    fields: dict[str, object] = {
        "version": day.isoformat(),
        "effective_from": day,
        "input": Decimal("3"),
        "output": Decimal("15"),
        "cache_write_5m": Decimal("3.75"),
        "cache_write_1h": Decimal("6"),
        "cache_read": Decimal("0.30"),
    }
    fields.update(overrides)
    return Prices(**fields)  # type: ignore[arg-type]


class TestEntries:
    @pytest.mark.parametrize("name", REQUIRED)
    def test_the_required_models_are_listed(self, name: str) -> None:
        assert name in MODELS

    def test_the_default_model_of_the_settings_is_in_the_catalog(self) -> None:
        default = Settings.model_fields["model"].default
        assert get_model(default).name == default

    def test_sonnet_4_5_has_the_published_list_prices(self) -> None:
        # Given Sonnet 4.5 on a day after its release
        prices = prices_on(get_model("claude-sonnet-4-5"), date(2026, 1, 1))

        # Then the rates are the published ones, per million tokens
        assert (prices.input, prices.output) == (Decimal("3"), Decimal("15"))
        assert (prices.cache_write_5m, prices.cache_write_1h, prices.cache_read) == (
            Decimal("3.75"),
            Decimal("6"),
            Decimal("0.30"),
        )
        assert (prices.long_context_threshold, prices.long_input, prices.long_output) == (
            200_000,
            Decimal("6"),
            Decimal("22.50"),
        )
        assert prices.batch_discount == Decimal("0.5")

    @pytest.mark.parametrize(
        ("name", "input_", "output"),
        [
            ("claude-haiku-4-5", "1", "5"),
            ("claude-opus-4-1", "15", "75"),
            ("claude-opus-4-5", "5", "25"),
            ("claude-3-5-haiku", "0.80", "4"),
        ],
    )
    def test_reference_prices_match_the_list(self, name: str, input_: str, output: str) -> None:
        prices = prices_on(get_model(name), date(2026, 1, 1))
        assert (prices.input, prices.output) == (Decimal(input_), Decimal(output))

    def test_the_200k_models_have_a_200k_window(self) -> None:
        for name in REQUIRED:
            assert get_model(name).context_window == 200_000

    @pytest.mark.parametrize("spec", list(MODELS.values()), ids=list(MODELS))
    def test_every_entry_is_consistent(self, spec: ModelSpec) -> None:
        # Given any catalog entry, then its limits, calibration and prices hang together
        assert 0 < spec.max_output_tokens < spec.context_window
        assert spec.calibration in (CALIBRATION_CLASSIC, CALIBRATION_NEW_TOKENIZER)
        days = [p.effective_from for p in spec.prices]
        assert days == sorted(days)
        for p in spec.prices:
            assert p.cache_write_5m == p.input * Decimal("1.25")
            assert p.cache_write_1h == p.input * 2
            assert p.cache_read < p.input < p.output
            if p.long_input is not None and p.long_output is not None:
                assert p.long_input > p.input and p.long_output > p.output

    def test_models_from_claude_4_7_on_count_more_tokens(self) -> None:
        assert get_model("claude-opus-4-7").calibration > get_model("claude-opus-4-6").calibration
        assert get_model("claude-haiku-5-5").calibration == CALIBRATION_NEW_TOKENIZER
        assert get_model("claude-sonnet-4-5").calibration == CALIBRATION_CLASSIC

    def test_the_catalog_cannot_be_changed_at_runtime(self) -> None:
        with pytest.raises(TypeError):
            MODELS["x"] = get_model("claude-sonnet-4-5")  # type: ignore[index]


class TestGetModel:
    @pytest.mark.parametrize(
        ("alias", "name"),
        [
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-sonnet-4-0", "claude-sonnet-4"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ],
    )
    def test_a_dated_snapshot_id_finds_its_model(self, alias: str, name: str) -> None:
        assert get_model(alias).name == name

    def test_an_unknown_model_is_refused_with_the_known_names(self) -> None:
        with pytest.raises(ConfigurationError) as exc_info:
            get_model("claude-nonexistent")
        message = str(exc_info.value)
        assert "claude-nonexistent" in message
        assert "claude-sonnet-4-5" in message and "BUDGETQ_MODEL" in message


class TestPricesOn:
    def test_the_latest_version_in_force_that_day_is_chosen(self) -> None:
        # Given Opus 4.6, whose long-context premium ended when the 1M window went GA
        opus = get_model("claude-opus-4-6")

        # When asking the day before and the day of the change
        before = prices_on(opus, date(2026, 3, 12))
        after = prices_on(opus, date(2026, 3, 13))

        # Then the premium applies only before
        assert before.long_context_threshold == 200_000
        assert after.long_context_threshold is None
        assert after.version == "2026-03-13"

    def test_a_day_before_the_first_version_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="first price version starts 2025-09-29"):
            prices_on(get_model("claude-sonnet-4-5"), date(2025, 9, 28))


class TestInvariants:
    def test_prices_out_of_order_are_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="sorted"):
            ModelSpec("m", 1000, 100, 1.35, (_prices(date(2026, 2, 1)), _prices(date(2026, 1, 1))))

    def test_a_model_without_prices_is_refused(self) -> None:
        with pytest.raises(ConfigurationError):
            ModelSpec("m", 1000, 100, 1.35, ())

    def test_half_configured_long_context_prices_are_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="together"):
            _prices(date(2026, 1, 1), long_context_threshold=200_000)

    def test_a_batch_discount_of_100_percent_is_refused(self) -> None:
        with pytest.raises(ConfigurationError):
            _prices(date(2026, 1, 1), batch_discount=Decimal(1))
