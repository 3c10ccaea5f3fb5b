"""``budgetq plan``, ``run`` and ``reprocess``: show a plan, or plan and enqueue a run and follow it.

``plan SET --dry-run`` writes nothing and sends nothing (token counts, a cache, are stored). ``run``
and ``reprocess`` exit 0 when the run succeeded (or, with ``--no-wait``, was enqueued), 1 when it
ended with failures, was stopped or was still running at ``--timeout``, 2 on a setting or input error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import run_issues
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.runs import Progress
from budgetq.adapters.store.selection import resolve_refs
from budgetq.cli import app, plan_view
from budgetq.cli.environment import Environment, console, database, fail, fail_line, worker_env
from budgetq.cli.option_values import seconds, usd
from budgetq.cli.watch import watch
from budgetq.domain.selector import Selector, SelectorKind, check_one_option, from_options, parse_refs
from budgetq.domain.statuses import ApiMode, RunKind, RunStatus
from budgetq.errors import BudgetqError, NothingSelectedError
from budgetq.services.ondemand import check_selection, start_run
from budgetq.services.planning import plan_run
from budgetq.settings import Settings

out = Console(highlight=False)

SetName = Annotated[
    str, typer.Argument(metavar="SET", help="The issue set's name (as given to `budgetq load --set`).")
]


SpendCap = Annotated[
    Decimal | None,
    typer.Option(
        "--spend-cap",
        parser=usd,
        metavar="USD",
        help="USD cap of the run: the lowest priorities that do not fit are deferred.",
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
Fresh = Annotated[
    bool,
    typer.Option(
        "--fresh",
        help="Pay for every issue again: no earlier answer is reused and duplicates are sent one by one.",
    ),
]
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the run until it ends.")]
Timeout = Annotated[
    float, typer.Option(parser=seconds, metavar="SECONDS", help="Stop following after this many seconds.")
]
Workers = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Start a local worker process with this many threads for the run (default: one with 8 "
        "when the broker is embedded, none when BUDGETQ_REDIS_URL points at your own workers' broker).",
    ),
]


def _set_id(sessions: sessionmaker[Session], name: str) -> int:
    with transaction(sessions) as session:
        return issue_store.set_id_by_name(session, name)


@app.command()
def plan(
    set_name: SetName,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the plan only (always so: `budgetq run` writes and enqueues)."),
    ] = True,
    spend_cap: SpendCap = None,
    api_mode: ApiModeOption = None,
    fresh: Fresh = False,
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
                # As `run` does: the option, else BUDGETQ_RUN_SPEND_CAP_USD.
                spend_cap_usd=spend_cap if spend_cap is not None else settings.run_spend_cap_usd,
                dry_run=True,
                api_mode=api_mode.value if api_mode is not None else None,
                fresh=fresh,
            )
    except BudgetqError as exc:
        raise fail(exc) from exc
    summary = plan_view.plan_summary(set_name, planned, settings)
    if as_json:
        print(json.dumps(summary))
    else:
        plan_view.print_plan(summary, planned)


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


def _leave_behind(sessions: sessionmaker[Session], run_id: int, set_name: str, timeout: float) -> Progress:
    """Stop a run this command's local worker could not finish before ``--timeout``: with an embedded
    broker nobody else will run it, and its batches must not be called, unasked, by a later command."""
    reason = (
        f"left behind by this command at --timeout {timeout:.0f}s (embedded broker: nobody else runs it); "
        f"resume its unanswered issues with: budgetq reprocess {set_name} --failed-only"
    )
    with transaction(sessions) as session:
        run_issues.stop_run(session, run_id, reason)
    console.print(f"[yellow]run {run_id} stopped: {reason}[/yellow]", soft_wrap=True)
    with transaction(sessions) as session:
        return run_store.progress(session, run_id)


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
    issue_refs: tuple[str, ...] = (),
    fresh: bool = False,
) -> None:
    settings = Settings()
    embedded_broker = settings.redis_url is None
    threads = workers if workers is not None else (8 if embedded_broker else 0)
    if embedded_broker and (not wait or threads == 0):
        # Only this process can reach an embedded broker: nobody else would pick the batches up.
        asked = "--no-wait" if not wait else "--workers 0"
        raise typer.Exit(
            fail_line(
                f"{asked} needs a broker your own workers share: set BUDGETQ_REDIS_URL (without it, the "
                "run uses an embedded broker only this command can reach, so it must wait and run a worker)"
            )
        )
    cap = spend_cap if spend_cap is not None else settings.run_spend_cap_usd
    try:
        with database(settings, need_api=threads > 0, need_broker=True) as (env, sessions):
            set_id = _set_id(sessions, set_name)
            if issue_refs:
                with transaction(sessions) as session:
                    ids = resolve_refs(session, set_id, set_name, issue_refs)
                selector = Selector(SelectorKind.ISSUES, ids)
            if selector is not None:
                try:
                    check_selection(sessions, set_id, selector)
                except NothingSelectedError as exc:
                    if selector.kind is not SelectorKind.FAILED:
                        raise
                    out.print(f"{exc}", soft_wrap=True)  # nothing failed: a success
                    return
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
                    fresh=fresh,
                )
                assert planned.run_id is not None
                what = f" ({selector.describe()})" if selector is not None else ""
                out.print(
                    f"run {planned.run_id} of set {set_name!r}{what} ({planned.api_mode}): "
                    f"{planned.issues:,} issues in "
                    f"{len(planned.batch_ids):,} batches (lower bound {planned.lower_bound:,}), "
                    f"{len(planned.plan.oversize):,} oversize, {len(planned.deferred):,} deferred; "
                    f"estimated ${planned.forecast.cost_usd if planned.forecast else 0:.4f}"
                    f"{plan_view.reuse_line(planned)}",
                    soft_wrap=True,
                )
                plan_view.print_left_out(planned)
                if not wait:
                    return
                progress = watch(sessions, planned.run_id, planned.issues, timeout)
                if embedded_broker and progress.status == RunStatus.RUNNING.value:
                    progress = _leave_behind(sessions, progress.run_id, set_name, timeout)
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
    fresh: Fresh = False,
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
        fresh=fresh,
    )


@app.command()
def reprocess(
    set_name: SetName,
    failed_only: Annotated[
        bool,
        typer.Option(
            "--failed-only", help="Only the issues that failed or were cancelled in their latest run."
        ),
    ] = False,
    issues: Annotated[
        str | None,
        typer.Option(
            "--issues",
            help="Only these issues: external ids as loaded (DQ-7,DQ-9) or internal ids (12,14); "
            "an external id wins when a text is both.",
        ),
    ] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", help="Only the issues of this priority.")
    ] = None,
    spend_cap: SpendCap = None,
    api_mode: ApiModeOption = None,
    wait: Wait = True,
    timeout: Timeout = 3600.0,
    workers: Workers = None,
    fresh: Fresh = False,
) -> None:
    """Start a new run of SET covering only what is asked (all issues when no option is given)."""
    try:
        check_one_option(failed_only, issues, priority)
        refs = parse_refs(issues) if issues is not None else ()
        selector = None if refs else from_options(failed_only, None, priority)
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
        issue_refs=refs,
        fresh=fresh,
    )
