"""Fitting a run to its spend cap: the highest priorities are kept, the rest deferred with a reason.

Issues are taken highest priority first, in arrival order within a priority, while their expected
cost fits the cap; from the first one that does not fit, every later issue is deferred. So no
issue is kept while one of higher priority waits, and no issue is dropped without a trace: each
deferred one carries its reason, with the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class CostedIssue:
    """An issue and its expected cost in USD."""

    issue_id: int
    priority: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class DeferredIssue:
    """An issue left out of a run to keep it within its spend cap, and why."""

    issue_id: int
    priority: int
    reason: str


@dataclass(frozen=True)
class Deferral:
    """Which issues a run keeps (highest priority first) and which it defers."""

    kept: tuple[int, ...]
    deferred: tuple[DeferredIssue, ...]
    kept_cost_usd: Decimal


def defer_to_cap(
    issues: Sequence[CostedIssue], cap_usd: Decimal, overhead_usd: Decimal = Decimal(0)
) -> Deferral:
    """Keep the highest-priority prefix of ``issues`` whose cost plus ``overhead_usd`` fits ``cap_usd``.

    ``overhead_usd`` is spent whatever is kept (e.g. writing the shared prompt to the cache once).
    Raises ValueError on a negative cap.
    """
    if cap_usd < 0:
        raise ValueError(f"the spend cap must be >= 0, got {cap_usd}")
    # sorted() is stable: arrival order is kept within a priority.
    ordered = sorted(issues, key=lambda issue: -issue.priority)
    spent = overhead_usd
    cut = len(ordered)
    for index, issue in enumerate(ordered):
        if spent + issue.cost_usd > cap_usd:
            cut = index
            break
        spent += issue.cost_usd
    kept = ordered[:cut]
    if cut == len(ordered):
        return Deferral(tuple(i.issue_id for i in kept), (), spent)
    first = ordered[cut]
    reason = (
        f"deferred by the run's spend cap of ${cap_usd:.2f}: the {len(kept):,} higher-priority issues kept "
        f"are expected to cost ${spent:.4f}, and priority-{first.priority} issue {first.issue_id} "
        f"(${first.cost_usd:.6f}) was the first that did not fit; raise --spend-cap or reprocess later"
    )
    deferred = tuple(DeferredIssue(i.issue_id, i.priority, reason) for i in ordered[cut:])
    return Deferral(tuple(i.issue_id for i in kept), deferred, spent)
