"""The honest guard's pure parts: ratios from provenance, the checked calibration, when to count."""

from __future__ import annotations

import math

import pytest

from budgetq.domain.answers import SYSTEM_PROMPT, PromptIssue, tool_definition
from budgetq.domain.budget import needs_exact_count
from budgetq.domain.prompt import build_prompt, observed_ratio
from budgetq.domain.tokens import checked_calibration, raw_count

ISSUES = [
    PromptIssue(
        1000 + i,
        10,
        f"orders.customer_id is NULL in {i}% of rows loaded by the nightly ETL; the CRM export ran late",
    )
    for i in range(40)
]


@pytest.mark.parametrize("calibration", [1.0, 1.35, 1.75])
@pytest.mark.parametrize("true_ratio", [1.1, 1.3, 2.0])
def test_the_ratio_recovered_from_an_estimate_is_the_tokenizer_ratio(
    calibration: float, true_ratio: float
) -> None:
    # Given a batch estimated at some calibration, and an API billing true_ratio tokens per cl100k token
    prompt = build_prompt(ISSUES, calibration)
    raw = raw_count(SYSTEM_PROMPT) + raw_count(str(tool_definition())) + raw_count(prompt.user)
    billed = math.ceil(raw * true_ratio)

    # When the ratio is recovered from the row (billed, estimate, the run's calibration)
    ratio = observed_ratio(billed, prompt.estimated_input_tokens, calibration)

    # Then it is the tokenizer's ratio within 3% (the tool JSON is counted in another layout)
    assert ratio is not None
    assert ratio == pytest.approx(true_ratio, rel=0.03)


def test_no_ratio_comes_from_a_row_that_cannot_hold_one() -> None:
    assert observed_ratio(1000, 400, 1.35) is None  # nothing but the fixed tool-use allowance
    assert observed_ratio(1000, 2000, 0.0) is None


def test_a_calibration_is_not_confirmed_until_enough_calls_back_it() -> None:
    # Given 19 observations and a minimum of 20
    ratios = [2.0] * 19

    # Then the run's calibration stands, unconfirmed (the worker counts every call exactly)
    calibration = checked_calibration(ratios, planned=1.0, min_samples=20)
    assert (calibration.factor, calibration.confirmed) == (1.0, False)


def test_provenance_raises_an_underestimating_calibration_to_its_high_quantile() -> None:
    # Given 100 calls billing 1.9..2.09 tokens per cl100k token, and a run planned at 1.0
    ratios = [1.9 + i / 500 for i in range(100)]

    # When checked
    calibration = checked_calibration(ratios, planned=1.0, quantile=0.95, min_samples=20)

    # Then the worker estimates at the 95th percentile of what was billed, and trusts it
    assert calibration.confirmed
    assert calibration.factor == pytest.approx(1.9 + 94 / 500)


def test_provenance_never_lowers_the_run_s_calibration() -> None:
    # Given calls billing fewer tokens than the run planned for
    calibration = checked_calibration([1.2] * 50, planned=1.35, min_samples=20)

    # Then the run's (more conservative) calibration stays
    assert (calibration.factor, calibration.confirmed) == (1.35, True)


@pytest.mark.parametrize(
    ("estimated", "max_tokens", "confirmed", "expected"),
    [
        (10_000, 4_000, True, False),  # 14,000 of a 20,000 limit: far from it
        (13_000, 5_000, True, False),  # exactly 90%: not within the margin
        (13_001, 5_000, True, True),  # just inside the margin
        (30_000, 5_000, True, True),  # over the limit on the estimate: the exact count decides
        (1_000, 1_000, False, True),  # far from it, but the calibration is not confirmed yet
    ],
)
def test_the_exact_count_is_asked_near_the_limit_or_while_the_calibration_is_unconfirmed(
    estimated: int, max_tokens: int, confirmed: bool, expected: bool
) -> None:
    assert needs_exact_count(estimated, max_tokens, 20_000, 0.9, confirmed=confirmed) is expected


def test_the_margin_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="margin"):
        needs_exact_count(1, 1, 100, 1.5, confirmed=True)
