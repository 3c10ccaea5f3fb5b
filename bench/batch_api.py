"""Nightly at half price: the seed scenario in sync mode and in batch-api mode, and what it costs.

Run: ``uv run python bench/batch_api.py [--issues N] [--concurrency C]``. It starts embedded
PostgreSQL and Redis (or uses BUDGETQ_DATABASE_URL / BUDGETQ_REDIS_URL), the stand-in in this process
and one real worker process, then plans the seed's 3,824 issues twice at the same calibration (so both
runs pack them alike): once answered by synchronous calls, once as Message Batches (this script sends
the poll task, as the beat would). Costs are ``sum(cost_usd)`` over each run's ``llm_calls`` at the
catalog's list prices (the stand-in bills nothing). For comparison, two figures computed with
``budgetq.domain.pricing`` on the token estimates:

- naive: one synchronous call per issue, each with the whole system prompt and tool, no caching;
- floor: only the issues' own input tokens and their answers' output tokens at list price (no prompt,
  no tool, no wrapper): what the work costs if overheads were free (also shown at the batch rate).

Both use the mean output per issue that the sync run measured. The last line is one JSON object with
sync_usd, batch_api_usd, naive_usd, floor_usd (and a few more figures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.queue.celery_app import POLL_MESSAGE_BATCHES, make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import make_engine, make_sessions, transaction, upgrade
from budgetq.devtools.embedded import ensure_servers
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.server import StandIn, StandInConfig
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.pricing import Usage, cost_usd
from budgetq.domain.prompt import fixed_input_tokens, issue_input_tokens
from budgetq.domain.tokens import estimate_tokens
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings

CENT = Decimal("0.01")


def _wait(app: Any, sessions: sessionmaker[Session], run_id: int, poll: bool, timeout_s: float) -> str:
    """Until the run ends; sending the poll task every half second when ``poll`` (as the beat would)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if poll:
            app.send_task(POLL_MESSAGE_BATCHES)
        time.sleep(0.5)
        with transaction(sessions) as session:
            status = run_store.progress(session, run_id).status
        if status != "running":
            return status
    raise SystemExit(f"run {run_id} did not finish within {timeout_s}s")


def _calls(sessions: sessionmaker[Session], run_id: int) -> dict[str, Any]:
    with transaction(sessions) as session:
        row = session.execute(
            text(
                "SELECT count(*) AS calls, sum(cost_usd) AS cost, sum(input_tokens) AS input, "
                "sum(output_tokens) AS output, sum(cache_read_input_tokens) AS cache_read, "
                "sum(cache_creation_input_tokens + cache_creation_1h_input_tokens) AS cache_write, "
                "count(DISTINCT message_batch_id) AS message_batches, "
                "(SELECT count(*) FROM run_issues WHERE run_id = :run AND status = 'answered') AS answered "
                "FROM llm_calls WHERE run_id = :run"
            ),
            {"run": run_id},
        ).one()
    return dict(row._mapping)


def _estimates(
    sessions: sessionmaker[Session], set_id: int, settings: Settings, output_per_issue: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """(naive, floor, floor at the batch rate) in USD from token estimates (see the module docstring)."""
    spec = get_model(settings.model)
    calibration = settings.calibration or spec.calibration
    prices = prices_on(spec, dt.date.today())
    fixed = fixed_input_tokens(calibration)
    with transaction(sessions) as session:
        rows = issue_store.planning_rows(session, set_id, None)
    output = int(output_per_issue)
    # Naive: the whole prompt (system, tool, preface) and the issue in its block, for every issue.
    naive = sum(
        (
            cost_usd(Usage(fixed + issue_input_tokens(r.raw_tokens, r.chars, calibration), output), prices)
            for r in rows
        ),
        Decimal(0),
    )
    # Floor: the issues' own text and their answers, nothing else.
    issue_tokens = sum(estimate_tokens(r.raw_tokens, r.chars, calibration) for r in rows)
    floor = cost_usd(Usage(issue_tokens, output * len(rows)), prices)
    floor_batch = cost_usd(Usage(issue_tokens, output * len(rows), batch=True), prices)
    return naive, floor, floor_batch


def main() -> None:
    """Run both modes and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issues", type=int, default=None, help="first N seed issues (default: all 3,824)")
    parser.add_argument("--concurrency", type=int, default=1, help="worker threads (1: one cache write)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    base = Settings()
    data_dir = Path(tempfile.mkdtemp(prefix="budgetq-bench-"))
    servers = ensure_servers(base.database_url, base.redis_url, data_dir)
    assert servers.database_url is not None and servers.redis_url is not None
    upgrade(servers.database_url)
    sessions = make_sessions(make_engine(servers.database_url))
    with StandIn(StandInConfig()) as standin:
        spec = get_model(base.model)
        settings = base.model_copy(
            update={
                "database_url": servers.database_url,
                "redis_url": servers.redis_url,
                "mode": "standin",
                "anthropic_base_url": standin.url,
                # Pinned, so the batch-api run is packed like the sync one (the sync run's provenance
                # would otherwise teach the planner a new calibration in between).
                "calibration": base.calibration or spec.calibration,
            }
        )
        with transaction(sessions) as session:
            set_id = issue_store.create_set(session, f"bench-batch-api-{time.strftime('%Y%m%d-%H%M%S')}")
            issue_store.insert_issues(
                session,
                set_id,
                (
                    issue_store.NewIssue(i.priority, i.text, i.external_id)
                    for i in islice(seed_issues(), args.issues)
                ),
            )
        env = {
            "BUDGETQ_DATABASE_URL": servers.database_url,
            "BUDGETQ_REDIS_URL": servers.redis_url,
            "BUDGETQ_MODE": "standin",
            "BUDGETQ_MODEL": settings.model,
            "ANTHROPIC_BASE_URL": standin.url,
        }
        worker = processes.start_worker(env, args.concurrency, data_dir / "worker.log")
        app = make_celery(settings, servers.redis_url)
        figures: dict[str, dict[str, Any]] = {}
        try:
            for mode in ("sync", "batch-api"):
                standin.reset()  # each run starts with an empty prompt cache
                started = time.monotonic()
                planned = plan_run(sessions, settings, set_id, kind="manual", api_mode=mode)
                assert planned.run_id is not None
                enqueue(app, sessions, planned.batch_ids)
                status = _wait(app, sessions, planned.run_id, mode == "batch-api", args.timeout)
                figures[mode] = {
                    "run_id": planned.run_id,
                    "status": status,
                    "batches": len(planned.batch_ids),
                    "seconds": round(time.monotonic() - started, 1),
                    **_calls(sessions, planned.run_id),
                }
        finally:
            processes.stop(worker)
    sync, batch = figures["sync"], figures["batch-api"]
    output_per_issue = Decimal(sync["output"]) / Decimal(max(1, sync["answered"]))
    naive, floor, floor_batch = _estimates(sessions, set_id, settings, output_per_issue)
    rows = [
        (
            "sync (one call per packed batch)",
            sync["cost"],
            f"{sync['calls']} calls, {sync['answered']} answered",
        ),
        (
            "batch-api (Message Batches)",
            batch["cost"],
            f"{batch['calls']} requests in {batch['message_batches']} Message Batches",
        ),
        ("naive (one call per issue, no cache)", naive, f"{sync['answered']} calls"),
        ("floor (issue tokens x list price)", floor, f"{output_per_issue:.1f} output tokens per issue"),
        ("floor at the batch rate", floor_batch, "the same tokens at 50% off"),
    ]
    print(f"{'mode':40} {'cost_usd':>12}  notes")
    for name, cost, note in rows:
        print(f"{name:40} {Decimal(cost).quantize(CENT):>12}  {note}")
    print(f"batch-api / sync = {Decimal(batch['cost']) / Decimal(sync['cost']):.4f}")
    print(
        json.dumps(
            {
                "sync_usd": str(Decimal(sync["cost"])),
                "batch_api_usd": str(Decimal(batch["cost"])),
                "naive_usd": str(naive),
                "floor_usd": str(floor),
                "floor_batch_usd": str(floor_batch),
                "issues": sync["answered"],
                "sync": {k: str(v) for k, v in sync.items()},
                "batch_api": {k: str(v) for k, v in batch.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
