"""Rate limits with the API's semantics: what a request counts, and what the headers announce."""

from __future__ import annotations

from budgetq.domain.limits import (
    AnnouncedLimit,
    RateLimits,
    RequestCost,
    actual_cost,
    admission_cost,
    announced_limits,
    effective_limits,
    max_in_window,
    unseen_usage,
    window_figures,
)
from budgetq.domain.pricing import Usage


def test_a_request_reserves_its_estimate_and_all_of_max_tokens() -> None:
    # Given a request estimated at 5,000 input tokens with max_tokens 4,096; then that is its admission cost
    assert admission_cost(5_000, 4_096) == RequestCost(1, 5_000, 4_096)


def test_cache_reads_do_not_count_against_input_but_cache_writes_do() -> None:
    # Given a reply that read 3,000 tokens from the cache, wrote 500 and had 200 uncached
    usage = Usage(
        input_tokens=200, output_tokens=321, cache_creation_5m=400, cache_creation_1h=100, cache_read=3_000
    )

    # Then it counts 700 input tokens and its actual output
    assert actual_cost(usage) == RequestCost(1, 700, 321)


def test_an_error_reply_counts_the_request_but_no_tokens() -> None:
    assert actual_cost(None) == RequestCost(1, 0, 0)


def test_the_headers_announce_limits_and_what_remains() -> None:
    # Given the API's rate-limit headers (any case)
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "Anthropic-RateLimit-Input-Tokens-Limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "12000",
        "anthropic-ratelimit-output-tokens-limit": "junk",
        "request-id": "req_1",
    }

    # Then the requests and input limits are read, and a malformed one is ignored
    assert announced_limits(headers) == (
        AnnouncedLimit("requests", 50, 49),
        AnnouncedLimit("input_tokens", 30_000, 12_000),
    )
    assert announced_limits(None) == ()


def test_a_learned_limit_lowers_a_configured_one_but_never_raises_it() -> None:
    # Given configured limits and limits learned from headers
    configured = RateLimits(requests=100, input_tokens=50_000, output_tokens=None, window_s=10)
    learned = {"requests": 200, "input_tokens": 30_000, "output_tokens": 8_000}

    # When they are combined
    effective = effective_limits(configured, learned)

    # Then each dimension takes the lower, an unset one takes the learned, and the window stays
    assert effective == RateLimits(requests=100, input_tokens=30_000, output_tokens=8_000, window_s=10)


def test_usage_the_api_sees_beyond_ours_counts_only_when_it_is_clear() -> None:
    # Given the API's view of 10,000 used of 30,000 (20,000 remaining)
    announced = AnnouncedLimit("input_tokens", 30_000, 20_000)

    # Then with 9,500 in our window the gap is noise, and with 5,000 the other 5,000 are unseen usage
    assert unseen_usage(announced, 9_500) == 0
    assert unseen_usage(announced, 5_000) == 5_000
    assert unseen_usage(AnnouncedLimit("input_tokens", 30_000, None), 0) == 0


def test_the_fullest_window_is_found_among_overlapping_windows() -> None:
    # Given requests of 10 tokens at 0, 5, 9.9 and 10 s, and 20 at 14 s, against 10-second windows
    events = [(0.0, 10), (5.0, 10), (9.9, 10), (10.0, 10), (14.0, 20)]

    # Then the fullest window (5, 14] holds 50: the one at 0 s has left the window at 10 s
    assert max_in_window(events, 10.0) == 50
    assert max_in_window([], 10.0) == 0


def test_window_figures_count_whole_windows_and_refusals() -> None:
    # Given three admitted requests and one refused within two 10-second windows, and one after them
    events = [
        (100.0, 600, False),
        (104.0, 600, False),
        (112.0, 600, False),
        (113.0, 0, True),
        (121.0, 600, False),
    ]

    # When measured against a limit of 1,000 per 10 s from t=100 over two windows
    figures = window_figures(events, 1_000, 10.0, start=100.0, windows=2)

    # Then 1,800 tokens over two windows is 900 per window, the fullest window held 1,200, 1 of 4 refused
    assert (figures.achieved_per_window, figures.max_window) == (900.0, 1_200)
    assert (figures.calls, figures.rejected, figures.rate_rejected) == (4, 1, 0.25)


def test_a_header_that_is_not_a_finite_number_is_ignored_not_raised() -> None:
    from budgetq.domain.limits import announced_limits, hold_off_seconds

    for value in ("1e400", "-inf", "nan", "12abc"):
        headers = {
            "anthropic-ratelimit-requests-limit": value,
            "anthropic-ratelimit-input-tokens-limit": "400000",
            "anthropic-ratelimit-input-tokens-remaining": value,
        }
        assert [(a.dimension, a.limit, a.remaining) for a in announced_limits(headers)] == [
            ("input_tokens", 400_000, None)
        ]
        assert hold_off_seconds({"anthropic-ratelimit-tokens-remaining": value}, None, 0.0) is None
