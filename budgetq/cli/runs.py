"""``budgetq plan``, ``run`` and ``reprocess``: show a plan, or plan and enqueue a run and follow it.

``plan SET --dry-run`` writes nothing and sends nothing (token counts, a cache, are stored). ``run``
and ``reprocess`` exit 0 when the run succeeded (or, with ``--no-wait``, was enqueued), 1 when it
ended with failures, was stopped or was still running at ``--timeout``, 2 on a setting or input error.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from budgetq import processes
from budgetq.cli import app
from budgetq.cli.environment import Environment, console, database, fail, worker_env
from budgetq.cli.watch import watch
from budgetq.errors import BudgetqError
from budgetq.queue import make_celery
from budgetq.selector import Selector, from_options
from budgetq.settings import Settings
from budgetq.statuses import ApiMode, RunKind, RunStatus
from budgetq.store import issues as issue_store
from budgetq.store.db import transaction
from scheduler.ondemand import check_selection, start_run
from scheduler.planning import PlannedRun, plan_run

out = Console(highlight=False)

SetName = Annotated[str, typer.Argument(help="The issue set's name (as given to `budgetq load --set`).")]
SpendCap = Annotated[
    Decimal | None,
    typer.Option(
        "--spend-cap", help="USD cap of the run: the lowest priorities that do not fit are deferred."
    ),
]
ApiModeOption = Annotated[
    ApiMode | None,
    typer.Option(
        "--api-mode",
        help="How the run's batches reach the model: one synchronous call each (sync) or the Message "
        "Batches API at its batch rate (batch-api). Default: the issue set's api_mode, else sync "
        "(nightly runs: BUDGETQ_NIGHTLY_API_MODE).",
    ),
]
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the run until it ends.")]
Timeout = Annotated[float, typer.Option(help="Stop following after this many seconds.")]
Workers = Annotated[
    int | None,
    typer.Option(
        help="Start a local worker process with this many threads for the run (default: one with 8 "
        "when the broker is embedded, none when BUDGETQ_REDIS_URL points at your own workers' broker)."
    ),
]
SHOWN = 20


def _set_id(sessions: sessionmaker[Session], name: str) -> int:
    with transaction(sessions) as session:
        return issue_store.set_id_by_name(session, name)


def _plan_summary(set_name: str, planned: PlannedRun, settings: Settings) -> dict[str, Any]:
    fc = planned.forecast
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
    }


def _print_plan(summary: dict[str, Any], planned: PlannedRun) -> None:
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
    _print_left_out(planned)


def _print_left_out(planned: PlannedRun) -> None:
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


@app.command()
def plan(
    set_name: SetName,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the plan only (always so: `budgetq run` writes and enqueues)."),
    ] = True,
    spend_cap: SpendCap = None,
    api_mode: ApiModeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Show how SET would be packed: batches, utilization, lower bound, estimated cost; calls nothing."""
    settings = Settings()
    try:
        with database(settings) as (_, sessions):
            planned = plan_run(
                sessions,
                settings,
                _set_id(sessions, set_name),
                kind=RunKind.MANUAL.value,
                spend_cap_usd=spend_cap,
                dry_run=True,
                api_mode=api_mode.value if api_mode is not None else None,
            )
    except BudgetqError as exc:
        raise fail(exc) from exc
    summary = _plan_summary(set_name, planned, settings)
    if as_json:
        print(json.dumps(summary))
    else:
        _print_plan(summary, planned)


@contextlib.contextmanager
def _local_worker(env: Environment, settings: Settings, threads: int) -> Iterator[None]:
    """A worker process for the run's duration, when asked for (or needed: an embedded broker)."""
    if threads <= 0:
        yield
        return
    worker = processes.start_worker(worker_env(env), threads, settings.data_dir / "worker.log")
    try:
        yield
    finally:
        processes.stop(worker)


def _start_and_follow(
    set_name: str,
    selector: Selector | None,
    *,
    kind: str,
    spend_cap: Decimal | None,
    api_mode: ApiMode | None,
    wait: bool,
    timeout: float,
    workers: int | None,
) -> None:
    settings = Settings()
    embedded_broker = settings.redis_url is None
    threads = workers if workers is not None else (8 if embedded_broker else 0)
    if embedded_broker:
        # Only this process can reach an embedded broker: nobody else would pick the batches up.
        wait = True
        threads = max(threads, 1)
    cap = spend_cap if spend_cap is not None else settings.run_spend_cap_usd
    try:
        with database(settings, need_api=threads > 0, need_broker=True) as (env, sessions):
            set_id = _set_id(sessions, set_name)
            if selector is not None:
                check_selection(sessions, set_id, selector)
            with _local_worker(env, settings, threads):
                planned = start_run(
                    sessions,
                    settings,
                    make_celery(settings, env.redis_url),
                    set_id,
                    kind=kind,
                    selector=selector,
                    spend_cap_usd=cap,
                    api_mode=api_mode.value if api_mode is not None else None,
                )
                assert planned.run_id is not None
                what = f" ({selector.describe()})" if selector is not None else ""
                out.print(
                    f"run {planned.run_id} of set {set_name!r}{what} ({planned.api_mode}): "
                    f"{planned.issues:,} issues in "
                    f"{len(planned.batch_ids):,} batches (lower bound {planned.lower_bound:,}), "
                    f"{len(planned.plan.oversize):,} oversize, {len(planned.deferred):,} deferred; "
                    f"estimated ${planned.forecast.cost_usd if planned.forecast else 0:.4f}",
                    soft_wrap=True,
                )
                _print_left_out(planned)
                if not wait:
                    return
                progress = watch(sessions, planned.run_id, planned.issues, timeout)
    except BudgetqError as exc:
        raise fail(exc) from exc
    counts = " · ".join(f"{status} {n:,}" for status, n in sorted(progress.issues.items()))
    out.print(f"run {progress.run_id} {progress.status}: {counts}; {progress.calls} calls, {progress.spend}")
    if progress.status == RunStatus.RUNNING.value:
        console.print(f"[yellow]run {progress.run_id} is still running after {timeout:.0f}s[/yellow]")
    if progress.status != RunStatus.SUCCEEDED.value:
        raise typer.Exit(1)


@app.command()
def run(
    set_name: SetName,
    spend_cap: SpendCap = None,
    api_mode: ApiModeOption = None,
    wait: Wait = True,
    timeout: Timeout = 3600.0,
    workers: Workers = None,
) -> None:
    """Plan SET and enqueue its batches, highest priority first; with --wait follow it to the end."""
    _start_and_follow(
        set_name,
        None,
        kind=RunKind.MANUAL.value,
        spend_cap=spend_cap,
        api_mode=api_mode,
        wait=wait,
        timeout=timeout,
        workers=workers,
    )


@app.command()
def reprocess(
    set_name: SetName,
    failed_only: Annotated[
        bool, typer.Option("--failed-only", help="Only the issues that failed in their latest run.")
    ] = False,
    issues: Annotated[str | None, typer.Option("--issues", help="Only these issue ids: 12,14,15.")] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", help="Only the issues of this priority.")
    ] = None,
    spend_cap: SpendCap = None,
    api_mode: ApiModeOption = None,
    wait: Wait = True,
    timeout: Timeout = 3600.0,
    workers: Workers = None,
) -> None:
    """Start a new run of SET covering only what is asked (all issues when no option is given)."""
    try:
        selector = from_options(failed_only, issues, priority)
    except BudgetqError as exc:
        raise fail(exc) from exc
    _start_and_follow(
        set_name,
        selector,
        kind=RunKind.REPROCESS.value,
        spend_cap=spend_cap,
        api_mode=api_mode,
        wait=wait,
        timeout=timeout,
        workers=workers,
    )
