"""How long a 429 asks every worker to wait (budgetq.domain.limits.hold_off_seconds), from its headers."""

from __future__ import annotations

import datetime as dt

import pytest

from budgetq.domain.limits import hold_off_seconds

NOW = dt.datetime(2025, 8, 21, 12, 40, 0, tzinfo=dt.UTC).timestamp()

CASES = [
    # (case, headers, retry-after seconds, expected wait)
    ("retry-after wins over any reset", {"anthropic-ratelimit-requests-remaining": "0",
     "anthropic-ratelimit-requests-reset": "2025-08-21T12:41:00Z"}, 7.0, 7.0),
    ("a spent limit waits for its reset", {"anthropic-ratelimit-input-tokens-remaining": "0",
     "anthropic-ratelimit-input-tokens-reset": "2025-08-21T12:40:12Z"}, None, 12.0),
    ("the latest reset of several spent limits", {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:05Z",
        "Anthropic-RateLimit-Tokens-Remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2025-08-21T12:40:30Z"}, None, 30.0),
    ("a limit not spent is not waited for", {"anthropic-ratelimit-requests-remaining": "3",
     "anthropic-ratelimit-requests-reset": "2025-08-21T12:41:00Z"}, None, None),
    ("a reset already past waits nothing", {"anthropic-ratelimit-output-tokens-remaining": "0",
     "anthropic-ratelimit-output-tokens-reset": "2025-08-21T12:39:00Z"}, None, 0.0),
    ("a malformed reset is ignored", {"anthropic-ratelimit-output-tokens-remaining": "0",
     "anthropic-ratelimit-output-tokens-reset": "soon"}, None, None),
    ("no headers, no retry-after", None, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "headers", "retry_after", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_429_asks_for_its_retry_after_else_the_reset_of_what_it_spent(
    case: str, headers: dict[str, str] | None, retry_after: float | None, expected: float | None
) -> None:
    assert hold_off_seconds(headers, retry_after, NOW) == expected
