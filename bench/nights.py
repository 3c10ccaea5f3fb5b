"""A week of nights: does a recurring failure get paid for once?

Run: ``uv run python bench/nights.py [--n 20000] [--nights 7] [--mode masked] [--workers 1] [--threads 20]``
(``--n 2000`` for a quick check).

A warehouse of data-quality checks: night 1 has ``--n`` failing checks. On each later night, ``0.8 n``
checks of the night before fail again (half of them with a changed failing count), ``0.1 n`` new
checks fail, and the rest of the night before's checks (``0.1 n`` from night 3 on) are resolved and
do not appear. Each night's failing checks are loaded as a new issue set (as a nightly export would
be) and run through the real pipeline: planning (token counts, answer reuse, packing), the broker,
``--workers`` real worker processes, the stand-in through the anthropic SDK, all in one database.

``needing_answer`` is computed by this script from the texts alone (``budgetq.domain.reuse``): the
night's issues whose reuse key no earlier night had, i.e. the new checks plus, unless the mode masks
numbers, the changed ones. Prints one JSON object per night (night, issues, needing_answer, calls,
cost_usd, reused) and a summary: each later night's cost over ``needing_answer / night-1 issues``
of night 1's cost (the target is at most 1.1). Servers: BUDGETQ_DATABASE_URL and BUDGETQ_REDIS_URL
when set (a fresh database is made and dropped after), else embedded ones.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
from pipeline import _fresh_database, _servers, _standin  # the bench's own servers (bench/pipeline.py)
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import make_engine, make_sessions, transaction
from budgetq.adapters.store.loading import load_issues
from budgetq.domain.ingest import RawRow
from budgetq.domain.reuse import ReuseMode, reuse_key
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings

PRIORITIES = (15, 10, 10, 10, 5, 5, 1)
TESTS = ("not_null", "unique", "accepted_values", "relationships")


@dataclass
class Check:
    """One data-quality check of the simulated warehouse, failing with ``count`` rows."""

    number: int
    count: int

    def text(self) -> str:
        """What the tool reports: numbers inside names stay, the failing count is volatile."""
        i = self.number
        return (
            f"Got {self.count} results, configured to fail if != 0: {TESTS[i % 4]} test on "
            f"warehouse.fct_orders_{i % 211}.col_{i} (owner team_{i % 17}); the upstream feed "
            f"stg_payments_{i % 7} changed its export."
        )


def nights(n: int, count: int, seed: int) -> list[list[Check]]:
    """The failing checks of each night, as the module docstring says."""
    rng = random.Random(seed)
    next_number = n
    tonight = [Check(i, rng.randint(1, 500)) for i in range(n)]
    out = [tonight]
    for _ in range(count - 1):
        recurring = rng.sample(tonight, int(0.8 * n))
        changed = set(rng.sample(range(len(recurring)), len(recurring) // 2))
        again = [
            Check(c.number, c.count + rng.randint(1, 50) if k in changed else c.count)
            for k, c in enumerate(recurring)
        ]
        new = [Check(next_number + k, rng.randint(1, 500)) for k in range(int(0.1 * n))]
        next_number += len(new)
        tonight = again + new
        rng.shuffle(tonight)
        out.append(tonight)
    return out


def _run_night(
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Any,
    night: int,
    checks: list[Check],
    timeout: float,
) -> dict[str, Any]:
    rows = (
        RawRow(line=k + 2, external_id=f"check-{c.number}", priority=PRIORITIES[c.number % 7], text=c.text())
        for k, c in enumerate(checks)
    )
    report = load_issues(sessions, f"night-{night}", rows, max_text_chars=10_000)
    assert report.set_id is not None, report
    started = time.monotonic()
    planned = plan_run(sessions, settings, report.set_id, kind="nightly")
    plan_s = time.monotonic() - started
    assert planned.run_id is not None
    enqueue(app, sessions, planned.batch_ids)
    deadline = time.monotonic() + timeout
    while True:
        with transaction(sessions) as session:
            progress = run_store.progress(session, planned.run_id)
        if progress.status != "running":
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"night {night}: run {planned.run_id} still running after {timeout}s")
        time.sleep(0.5)
    with transaction(sessions) as session:
        view = session.execute(
            text("SELECT attempts, cost_usd, reused_issues, saved_usd FROM cost_by_run WHERE run_id = :r"),
            {"r": planned.run_id},
        ).one()
    return {
        "status": progress.status,
        "calls": int(view.attempts),
        "cost_usd": Decimal(view.cost_usd),
        "reused": int(view.reused_issues),
        "saved_usd": Decimal(view.saved_usd),
        "plan_s": round(plan_s, 2),
    }


def main() -> None:
    """Simulate the nights, run each through the pipeline, print one JSON object per night and a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--nights", type=int, default=7)
    parser.add_argument("--mode", choices=[m.value for m in ReuseMode], default=ReuseMode.MASKED.value)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    week = nights(args.n, args.nights, args.seed)
    mode = ReuseMode(args.mode)
    with tempfile.TemporaryDirectory(prefix="budgetq-nights-") as folder:
        data = Path(folder)
        with (
            _servers(data) as (server_url, broker_url),
            _standin(args.latency) as standin_url,
            _fresh_database(server_url) as url,
        ):
            settings = Settings(
                database_url=url,
                redis_url=broker_url,
                mode="standin",
                anthropic_base_url=standin_url,
                reuse_mode=mode.value,
            )
            env = {
                "BUDGETQ_DATABASE_URL": url,
                "BUDGETQ_REDIS_URL": broker_url,
                "BUDGETQ_MODE": "standin",
                "ANTHROPIC_BASE_URL": standin_url,
                "BUDGETQ_WORKER_CONCURRENCY": str(args.threads),
                "BUDGETQ_LOG_LEVEL": "WARNING",
            }
            engine = make_engine(url, pool_size=8)
            sessions = make_sessions(engine)
            app = make_celery(settings, broker_url)
            redis.Redis.from_url(broker_url.replace("redis+socket://", "unix://")).flushdb()
            workers = [
                processes.start_worker(env, args.threads, data / f"worker-{i}.log")
                for i in range(args.workers)
            ]
            results: list[dict[str, Any]] = []
            seen: set[str] = set()
            try:
                for night, checks in enumerate(week, start=1):
                    keys = [
                        reuse_key(
                            c.text(), mode, model_family=settings.model, external_id=f"check-{c.number}"
                        )
                        for c in checks
                    ]
                    needing = len(set(keys) - seen)
                    seen.update(keys)
                    ran = _run_night(sessions, settings, app, night, checks, args.timeout)
                    line = {"night": night, "issues": len(checks), "needing_answer": needing} | ran
                    results.append(line)
                    print(json.dumps(line, default=str), flush=True)
            finally:
                for w in workers:
                    processes.stop(w)
                engine.dispose()
    first = results[0]
    ratios = []
    for r in results[1:]:
        share = first["cost_usd"] * r["needing_answer"] / first["issues"]
        ratios.append(round(float(r["cost_usd"] / share), 3) if share else None)
    worst = max((x for x in ratios if x is not None), default=0.0)
    print(
        json.dumps(
            {
                "summary": True,
                "mode": mode.value,
                "n": args.n,
                "night_1_cost_usd": str(first["cost_usd"]),
                "week_cost_usd": str(sum(r["cost_usd"] for r in results)),
                "week_saved_usd": str(sum(r["saved_usd"] for r in results)),
                "cost_over_needing_share": ratios,
                "worst": worst,
                "within_1_1": worst <= 1.1,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
