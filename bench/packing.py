"""Packing quality and speed: batches against the lower bound, mean fill and seconds per instance.

Run: ``uv run python bench/packing.py [--quick]`` (``--quick`` skips the two 1M instances). The last
lines are one JSON object per instance with keys instance, n, batches, lower_bound, mean_fill,
seconds. Instances are generated with fixed seeds, so figures repeat run to run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from budgetq.domain.answers import ISSUE_WRAPPER_TOKENS
from budgetq.domain.packing import PackItem, PackLimits, derive_limits, lower_bound, pack

WINDOW = 200_000
SAFE_UTILIZATION = 0.75
MAX_TOKENS = 8192
FIXED_INPUT = 1500
OUTPUT_PER_ISSUE = 80
SEED = 20240302


@dataclass(frozen=True)
class Instance:
    """A named packing instance and the limits it is packed under."""

    name: str
    items: list[PackItem]
    limits: PackLimits


@dataclass(frozen=True)
class Result:
    """What packing one instance gave."""

    instance: str
    n: int
    batches: int
    lower_bound: int
    mean_fill: float
    seconds: float


def limits(max_items: int | None) -> PackLimits:
    """The per-call limits of a 200k-window model at 75%, 8,192 output tokens."""
    return derive_limits(
        context_window=WINDOW,
        safe_utilization=SAFE_UTILIZATION,
        model_max_output=64_000,
        max_tokens=MAX_TOKENS,
        fixed_input_tokens=FIXED_INPUT,
        max_items=max_items,
    )


def lognormal_tokens(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    """A clipped lognormal text length in tokens."""
    return max(low, min(high, round(rng.lognormvariate(math.log(median), sigma))))


def random_priorities(rng: random.Random, n: int) -> list[int]:
    """Priorities in realistic proportions: few critical, many medium."""
    return rng.choices([15, 10, 5, 1], weights=[5, 30, 40, 25], k=n)


def seed_scenario() -> Instance:
    """The seed's 3,824 issues of about 40 tokens: 2,231 at priority 10, 1,304 at 5, 289 at 1."""
    rng = random.Random(SEED)
    priorities = [10] * 2231 + [5] * 1304 + [1] * 289
    rng.shuffle(priorities)
    items = [
        PackItem(i, p, lognormal_tokens(rng, 40, 0.3, 10, 400) + ISSUE_WRAPPER_TOKENS, OUTPUT_PER_ISSUE)
        for i, p in enumerate(priorities)
    ]
    return Instance("seed-3824", items, limits(100))


def lognormal(n: int, max_items: int | None) -> Instance:
    """``n`` issues with lognormal lengths (median 50 tokens, long tail clipped at 20,000)."""
    rng = random.Random(SEED + n)
    priorities = random_priorities(rng, n)
    items = [
        PackItem(i, p, lognormal_tokens(rng, 50, 1.0, 5, 20_000) + ISSUE_WRAPPER_TOKENS, OUTPUT_PER_ISSUE)
        for i, p in enumerate(priorities)
    ]
    suffix = f"-k{max_items}" if max_items else "-nok"
    return Instance(f"lognormal-{n // 1000}k{suffix}", items, limits(max_items))


def large(n: int, max_items: int | None) -> Instance:
    """Long issues: lognormal lengths around 2,000 tokens, clipped at 60% of the input limit."""
    rng = random.Random(SEED + 7 * n)
    lim = limits(max_items)
    cap = int(0.6 * lim.input_limit)
    items = [
        PackItem(i, p, lognormal_tokens(rng, 2000, 1.5, 10, cap) + ISSUE_WRAPPER_TOKENS, OUTPUT_PER_ISSUE)
        for i, p in enumerate(random_priorities(rng, n))
    ]
    suffix = f"-k{max_items}" if max_items else "-nok"
    return Instance(f"large-{n // 1000}k{suffix}", items, lim)


def large_uniform(n: int) -> Instance:
    """The classic hard case: lengths uniform from 1% to 60% of the input limit, no item limit."""
    rng = random.Random(SEED + 11 * n)
    lim = limits(None)
    low, high = lim.input_limit // 100, int(0.6 * lim.input_limit)
    items = [
        PackItem(i, p, rng.randint(low, high), OUTPUT_PER_ISSUE)
        for i, p in enumerate(random_priorities(rng, n))
    ]
    return Instance(f"uniform-60pct-{n // 1000}k", items, lim)


def mixed(n: int) -> Instance:
    """Mostly short issues with one in ten up to 60% of the input limit, at most 100 per call."""
    rng = random.Random(SEED + 13 * n)
    lim = limits(100)
    cap = int(0.6 * lim.input_limit)
    items = []
    for i, p in enumerate(random_priorities(rng, n)):
        size = rng.randint(1000, cap) if rng.random() < 0.1 else lognormal_tokens(rng, 50, 1.0, 5, 2000)
        items.append(PackItem(i, p, size + ISSUE_WRAPPER_TOKENS, OUTPUT_PER_ISSUE))
    return Instance(f"mixed-10pct-large-{n // 1000}k", items, lim)


def run(instance: Instance) -> Result:
    """Pack one instance and measure it."""
    started = time.perf_counter()
    plan = pack(instance.items, instance.limits)
    seconds = time.perf_counter() - started
    packed = sum(len(b.issue_ids) for b in plan.batches)
    assert packed + len(plan.oversize) == len(instance.items), "an item went missing"
    fills = [b.fill(instance.limits) for b in plan.batches]
    return Result(
        instance=instance.name,
        n=len(instance.items),
        batches=len(plan.batches),
        lower_bound=lower_bound(instance.items, instance.limits),
        mean_fill=round(sum(fills) / len(fills), 4) if fills else 0.0,
        seconds=round(seconds, 3),
    )


def main() -> None:
    """Run every instance, print a table, then one JSON object per instance."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 1M-issue instances")
    args = parser.parse_args()
    builders: list[Callable[[], Instance]] = [
        seed_scenario,
        lambda: lognormal(100_000, 100),
        lambda: lognormal(100_000, None),
        lambda: large(20_000, 100),
        lambda: large_uniform(20_000),
        lambda: mixed(100_000),
    ]
    if not args.quick:
        builders[3:3] = [lambda: lognormal(1_000_000, 100), lambda: lognormal(1_000_000, None)]
    lim = limits(100)
    print(
        f"limits: input {lim.input_limit:,} tokens, output {lim.output_limit:,}, "
        f"{lim.max_items} issues per call (or none where the name says nok)"
    )
    print(f"{'instance':<26}{'n':>10}{'batches':>10}{'bound':>10}{'over':>8}{'fill':>8}{'seconds':>9}")
    results = []
    for build in builders:
        result = run(build())
        results.append(result)
        over = (result.batches - result.lower_bound) / result.lower_bound if result.lower_bound else 0.0
        print(
            f"{result.instance:<26}{result.n:>10,}{result.batches:>10,}{result.lower_bound:>10,}"
            f"{over:>8.2%}{result.mean_fill:>8.3f}{result.seconds:>9.3f}"
        )
    for result in results:
        print(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
