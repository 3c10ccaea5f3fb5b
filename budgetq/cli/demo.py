"""``budgetq demo``: the seed's scenario end to end, on embedded servers when none are configured."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from budgetq import processes
from budgetq.cli import app
from budgetq.cli.environment import console, environment, fail, worker_env
from budgetq.cli.watch import watch
from budgetq.errors import BudgetqError
from budgetq.queue import make_celery
from budgetq.scenario import seed_issues
from budgetq.settings import Settings
from budgetq.statuses import IssueStatus, RunKind, RunStatus
from budgetq.store import issues as issue_store
from budgetq.store import runs as run_store
from budgetq.store.db import make_engine, make_sessions, ping, transaction, upgrade
from budgetq.store.models import Issue, LLMCall, Result


def _summary(
    session: Session, run_id: int, set_id: int, p: run_store.Progress, seconds: float
) -> dict[str, Any]:
    issues = session.scalar(select(func.count()).select_from(Issue).where(Issue.set_id == set_id)) or 0
    accounted = sum(p.issues.values())
    results = session.scalar(select(func.count()).select_from(Result).where(Result.run_id == run_id)) or 0
    over_guard = (
        session.scalar(
            select(func.count())
            .select_from(LLMCall)
            .where(
                LLMCall.run_id == run_id,
                LLMCall.billed_input_tokens + LLMCall.max_tokens > LLMCall.context_window * 0.75,
            )
        )
        or 0
    )
    return {
        "run_id": run_id,
        "status": p.status,
        "issues": issues,
        "answered": p.issues.get(IssueStatus.ANSWERED.value, 0),
        "results": results,
        "failed": p.issues.get(IssueStatus.FAILED.value, 0),
        "oversize": p.issues.get(IssueStatus.OVERSIZE.value, 0),
        "deferred": p.issues.get(IssueStatus.DEFERRED.value, 0),
        "dropped": issues - accounted,
        "batches": sum(p.batches.values()),
        "calls": p.calls,
        "calls_over_guard": over_guard,
        "max_utilization": round(p.max_utilization, 4),
        "input_tokens": p.input_tokens,
        "output_tokens": p.output_tokens,
        "cache_read_tokens": p.cache_read_tokens,
        "cost_usd": str(p.cost_usd.quantize(Decimal("0.000001"))),
        "seconds": round(seconds, 1),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"run {summary['run_id']}: {summary['status']}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    Console().print(table)


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    concurrency: Annotated[int, typer.Option(help="Worker threads (concurrent calls).")] = 8,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 900.0,
) -> None:
    """Run the seed's scenario end to end: 3,824 issues → packed batches → a real worker → results, cost."""
    settings = Settings()
    started = time.monotonic()
    try:
        with environment(settings, need_api=True) as env:
            upgrade(env.database_url)
            engine = make_engine(env.database_url)
            ping(engine)
            sessions = make_sessions(engine)
            with transaction(sessions) as session:
                name = f"seed-demo-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10_000:04d}"
                set_id = issue_store.create_set(session, name)
                issue_store.insert_issues(
                    session,
                    set_id,
                    (issue_store.NewIssue(i.priority, i.text, i.external_id) for i in seed_issues()),
                )
            from scheduler.planning import enqueue, plan_run

            planned = plan_run(sessions, settings, set_id, kind=RunKind.DEMO.value)
            assert planned.run_id is not None
            console.print(
                f"Planned run {planned.run_id}: {planned.issues} issues in {len(planned.batch_ids)} "
                f"batches (lower bound {planned.lower_bound}), {len(planned.plan.oversize)} oversize."
            )
            worker = processes.start_worker(worker_env(env), concurrency, settings.data_dir / "worker.log")
            try:
                enqueue(make_celery(settings, env.redis_url), sessions, planned.batch_ids)
                progress = watch(sessions, planned.run_id, planned.issues, timeout)
            finally:
                processes.stop(worker)
            with transaction(sessions) as session:
                summary = _summary(session, planned.run_id, set_id, progress, time.monotonic() - started)
    except BudgetqError as exc:
        raise fail(exc) from exc
    if as_json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary["status"] != RunStatus.SUCCEEDED.value:
        raise typer.Exit(1)
