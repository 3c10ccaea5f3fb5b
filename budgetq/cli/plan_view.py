"""How ``budgetq plan`` shows a plan: its figures as JSON, or tables and lines for a person."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from budgetq.domain.statuses import ApiMode
from budgetq.services.planning import PlannedRun
from budgetq.settings import Settings

out = Console(highlight=False)
SHOWN = 20


def plan_summary(set_name: str, planned: PlannedRun, settings: Settings) -> dict[str, Any]:
    """The plan's figures as one JSON-ready mapping (what ``plan --json`` prints)."""
    fc = planned.forecast
    reuse = planned.reuse
    return {
        "set": set_name,
        "model": settings.model,
        "issues": planned.issues,
        "batches": len(planned.plan.batches),
        "lower_bound": planned.lower_bound,
        "oversize": len(planned.plan.oversize),
        "deferred": len(planned.deferred),
        "utilization_min": round(fc.utilization_min, 4) if fc else 0.0,
        "utilization_median": round(fc.utilization_median, 4) if fc else 0.0,
        "utilization_max": round(fc.utilization_max, 4) if fc else 0.0,
        "expected_input_tokens": fc.input_tokens if fc else 0,
        "expected_cache_read_tokens": fc.cache_read_tokens if fc else 0,
        "expected_output_tokens": fc.output_tokens if fc else 0,
        "estimated_cost_usd": str(fc.cost_usd) if fc else "0",
        "api_mode": planned.api_mode,
        "reused": len(reuse.reused) if reuse else 0,
        "duplicates_sent_once": len(reuse.copies) if reuse else 0,
        "expected_saving_usd": str(reuse.saved_usd) if reuse else "0",
    }


def reuse_line(planned: PlannedRun) -> str:
    """``; 120 reused (saving $0.1234), 5 duplicates sent once`` when the plan reuses, else nothing."""
    reuse = planned.reuse
    if reuse is None or not reuse.left_out:
        return ""
    return (
        f"; {len(reuse.reused):,} reused (saving ${reuse.saved_usd:.4f}, what they cost when first "
        f"answered), {len(reuse.copies):,} duplicates sent once"
    )


def print_plan(summary: dict[str, Any], planned: PlannedRun) -> None:
    """Print the plan for a person: limits, counts, utilization, cost, batches by priority, left-outs."""
    limits = planned.limits
    per_call = f"≤{limits.max_items} issues, " if limits.max_items else ""
    out.print(
        f"[bold]Plan for set {escape(summary['set'])!r}[/bold] on {summary['model']}: {per_call}"
        f"≤{limits.input_limit:,} issue input tokens and max_tokens {limits.output_limit:,} per call",
        soft_wrap=True,
    )
    out.print(
        f"{summary['issues']:,} issues → {summary['batches']:,} batches "
        f"(lower bound {summary['lower_bound']:,}); "
        f"{summary['oversize']:,} oversize, {summary['deferred']:,} deferred",
        soft_wrap=True,
    )
    out.print(
        f"utilization of the window per call (fixed prompt + issues + max_tokens): "
        f"min {summary['utilization_min']:.1%} · median {summary['utilization_median']:.1%} · "
        f"max {summary['utilization_max']:.1%}",
        soft_wrap=True,
    )
    out.print(
        f"expected tokens: input {summary['expected_input_tokens']:,} "
        f"(of which cache reads {summary['expected_cache_read_tokens']:,}) · "
        f"output {summary['expected_output_tokens']:,}",
        soft_wrap=True,
    )
    rate = "the Message Batches rate" if summary["api_mode"] == ApiMode.BATCH_API.value else "list price"
    out.print(
        f"estimated cost ${Decimal(summary['estimated_cost_usd']):.4f} ({summary['api_mode']}: {rate}; "
        "the fixed prompt is written to the cache by the first call and read by the others)",
        soft_wrap=True,
    )
    out.print(
        f"reused {summary['reused']:,} issues from earlier answers (expected saving "
        f"${Decimal(summary['expected_saving_usd']):.4f}, what they cost when first answered); "
        f"{summary['duplicates_sent_once']:,} duplicates inside the set ride along with another issue",
        soft_wrap=True,
    )
    by_priority: Counter[int] = Counter()
    issues_by_priority: Counter[int] = Counter()
    for batch in planned.plan.batches:
        by_priority[batch.priority] += 1
        issues_by_priority[batch.priority] += len(batch.issue_ids)
    if by_priority:
        table = Table(title="batches in queue order", title_justify="left")
        for name in ("led by priority", "batches", "issues"):
            table.add_column(name, justify="right")
        for priority in sorted(by_priority, reverse=True):
            table.add_row(str(priority), f"{by_priority[priority]:,}", f"{issues_by_priority[priority]:,}")
        out.print(table)
    print_left_out(planned)


def print_left_out(planned: PlannedRun) -> None:
    """The oversize issues with their reasons, and the deferred ones by priority with their shared reason."""
    oversize = planned.plan.oversize
    if oversize:
        table = Table(
            title=f"{len(oversize):,} oversize issues (cannot fit a call even alone)", title_justify="left"
        )
        table.add_column("issue", justify="right")
        table.add_column("priority", justify="right")
        table.add_column("reason", overflow="fold")
        for o in oversize[:SHOWN]:
            table.add_row(str(o.issue_id), str(o.priority), escape(o.reason))
        if len(oversize) > SHOWN:
            table.caption = f"… and {len(oversize) - SHOWN:,} more (run_issues holds them all, with reasons)"
        out.print(table)
    by_reason: dict[str, list[tuple[int, int]]] = {}
    for d in planned.deferred:
        by_reason.setdefault(d.reason, []).append((d.issue_id, d.priority))
    for reason, issues in by_reason.items():
        per_priority = Counter(priority for _, priority in issues)
        counts = ", ".join(f"{n:,} of priority {p}" for p, n in sorted(per_priority.items(), reverse=True))
        ids = ", ".join(str(i) for i, _ in issues[:SHOWN]) + (" …" if len(issues) > SHOWN else "")
        out.print(
            f"[bold]{len(issues):,} deferred issues[/bold] ({counts}): {escape(reason)}", soft_wrap=True
        )
        out.print(f"deferred issue ids: {ids}", soft_wrap=True)
