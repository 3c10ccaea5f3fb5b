"""``budgetq demo``: the seed's scenario end to end, on embedded servers when none are configured."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import (
    DatabaseTimeouts,
    make_engine,
    make_sessions,
    ping,
    transaction,
    upgrade,
)
from budgetq.cli import app
from budgetq.cli.environment import console, environment, fail, worker_env
from budgetq.cli.option_values import seconds
from budgetq.cli.plan_view import reuse_line
from budgetq.cli.watch import watch
from budgetq.domain.statuses import IssueStatus, RunKind, RunStatus
from budgetq.errors import BudgetqError
from budgetq.settings import Settings


def _summary(
    session: Session, run_id: int, set_id: int, p: run_store.Progress, seconds: float, guard_share: float
) -> dict[str, Any]:
    tally = run_store.tally(session, run_id, set_id, guard_share=guard_share)
    accounted = sum(p.issues.values())
    return {
        "run_id": run_id,
        "status": p.status,
        "issues": tally.issues,
        "answered": p.issues.get(IssueStatus.ANSWERED.value, 0),
        "reused": p.issues.get(IssueStatus.REUSED.value, 0),
        "results": tally.results,
        "failed": p.issues.get(IssueStatus.FAILED.value, 0),
        "oversize": p.issues.get(IssueStatus.OVERSIZE.value, 0),
        "deferred": p.issues.get(IssueStatus.DEFERRED.value, 0),
        "dropped": tally.issues - accounted,
        "batches": sum(p.batches.values()),
        "calls": p.calls,
        "calls_over_guard": tally.calls_over_guard,
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
    # Checked while the options are parsed, before any server, stand-in or worker is started.
    concurrency: Annotated[int, typer.Option(min=1, help="Worker threads (concurrent calls).")] = 8,
    timeout: Annotated[
        float,
        typer.Option(parser=seconds, metavar="SECONDS", help="Give up waiting after this many seconds."),
    ] = 900.0,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Pay for every issue again, reusing no earlier answer.")
    ] = False,
) -> None:
    """Run the seed's scenario end to end: 3,824 issues → packed batches → a real worker → results, cost."""
    settings = Settings()
    started = time.monotonic()
    try:
        with environment(settings, need_api=True) as env:
            upgrade(env.database_url, connect_timeout_s=settings.db_connect_timeout_s)
            engine = make_engine(env.database_url, timeouts=DatabaseTimeouts.of(settings))
            ping(engine)
            sessions = make_sessions(engine)
            from budgetq.devtools.scenario import seed_issues

            with transaction(sessions) as session:
                name = f"seed-demo-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10_000:04d}"
                set_id = issue_store.create_set(session, name)
                issue_store.insert_issues(
                    session,
                    set_id,
                    (issue_store.NewIssue(i.priority, i.text, i.external_id) for i in seed_issues()),
                )
            from budgetq.services.planning import enqueue, plan_run

            # Against a kept database (BUDGETQ_DATABASE_URL) a second demo reuses the first one's answers.
            planned = plan_run(sessions, settings, set_id, kind=RunKind.DEMO.value, fresh=fresh)
            assert planned.run_id is not None
            console.print(
                f"Planned run {planned.run_id}: {planned.issues} issues in {len(planned.batch_ids)} "
                f"batches (lower bound {planned.lower_bound}), {len(planned.plan.oversize)} oversize"
                f"{reuse_line(planned)}."
            )
            worker = processes.start_worker(worker_env(env), concurrency, settings.data_dir / "worker.log")
            try:
                enqueue(make_celery(settings, env.redis_url), sessions, planned.batch_ids)
                progress = watch(sessions, planned.run_id, planned.issues, timeout)
            finally:
                processes.stop(worker)
            with transaction(sessions) as session:
                summary = _summary(
                    session,
                    planned.run_id,
                    set_id,
                    progress,
                    time.monotonic() - started,
                    settings.safe_utilization,
                )
    except BudgetqError as exc:
        raise fail(exc) from exc
    if as_json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
        Console(highlight=False).print(
            f"The diagnoses: budgetq results {name} --format jsonl", soft_wrap=True
        )
    if summary["status"] != RunStatus.SUCCEEDED.value:
        raise typer.Exit(1)
