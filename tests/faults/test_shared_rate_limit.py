"""Three worker processes share one rate limit against the stand-in's enforced input-token limit.

The bench (bench/ratelimit.py) runs this scenario with real 60-second windows; here the window is
10 s and the limit 30,000 tokens per window (180,000 per minute): every figure is per window, so
the check is the same at a sixth of the time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.ratelimit import Scenario, run_scenario

pytestmark = pytest.mark.faults


def test_three_workers_stay_within_the_limit_without_429s_and_use_at_least_90_percent_of_it(
    fresh_database: Callable[[], str], broker_url: str, tmp_path: Path
) -> None:
    # Given three workers of 4 threads sharing a limiter of 30,000 input tokens per 10 s, against a
    # stand-in enforcing the same limit, with far more work queued than the limit lets through
    scenario = Scenario(limit=30_000, window_s=10.0, seconds=20.0, issues=1_200)

    # When they work for two windows
    figures = run_scenario(fresh_database(), broker_url, scenario, tmp_path)
    print(figures)

    # Then no window exceeded the limit by more than 5%, fewer than 1% of calls got a 429,
    # and the achieved input per window is at least 90% of the limit
    assert figures.calls >= 100
    assert figures.max_window <= scenario.limit * 1.05
    assert figures.rate_rejected < 0.01
    assert figures.achieved_per_window >= 0.9 * scenario.limit
