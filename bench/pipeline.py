"""End to end at growing sizes: does a run's cost per batch stay flat as the run grows?

Run: ``uv run python bench/pipeline.py [--n 10000 100000] [--workers 2] [--threads 20] [--latency 0.2]
[--mode live|standin]`` or ``--plan-only --n 1000000`` (load, count, pack, write batches and enqueue;
no calls).

``--mode live`` (the default) calls the stand-in as a live API, with a key, as production calls
Anthropic; first, unmeasured, a warm-up set of ``--warmup`` issues gives the database the billed
provenance any night after the first has, so the guard's calibration is confirmed and only batches
near the guard ask ``count_tokens``. ``--mode standin`` bills nothing, so the calibration is never
confirmed and every batch asks ``count_tokens`` first (one more round trip per batch).

Per size it loads N issues (COPY), plans them (100 issues a call), starts ``--workers`` real worker
processes of ``--threads`` threads against a stand-in process answering in ``--latency`` seconds, and
runs the set twice: without a spend cap, then with a cap that never binds. In the same database it
then measures the write ceiling: the rows a worker writes for one answered batch (one provenance row,
one result per issue, the issues' statuses, the batch's status) written by plain SQL, one
transaction per batch, from ``workers × threads`` threads. Servers: BUDGETQ_DATABASE_URL and
BUDGETQ_REDIS_URL when set (a fresh database is made per size and dropped after), else embedded ones.

Prints one JSON object per size: n, batches, seconds (first call's start to last call's end),
batches_per_s, capped_batches_per_s, ceiling_batches_per_s, load_s, plan_s, and the peak RSS of the
scheduler side (this process while it plans) and of each worker process, in MB.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import redis
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.processes import local_workers as processes
from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store import runs as run_store
from budgetq.adapters.store.engine import make_engine, make_sessions, sqlalchemy_url, transaction, upgrade
from budgetq.adapters.store.loading import load_issues
from budgetq.domain.ingest import RawRow
from budgetq.services.planning import enqueue, plan_run
from budgetq.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
NEVER_BINDING_CAP = Decimal("1000000")
BENCH_KEY = "sk-bench-standin"  # never leaves the machine: the base URL is the stand-in's


def _rss_mb(pid: int | str = "self") -> float:
    """The peak resident set (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _texts(n: int, prefix: str = "bench") -> Iterator[RawRow]:
    """N distinct issue rows of about 40 tokens, priorities spread as in the seed (15/10/5/1)."""
    priorities = (15, 10, 10, 10, 5, 5, 1)
    for i in range(n):
        text_ = (
            f"Table warehouse.orders_{i % 97} column amount_{i % 13}: {i % 1000} rows are null since the "
            f"load of partition {i}; upstream feed fct_payments_{i % 7} changed its schema ({prefix} {i})."
        )
        yield RawRow(line=i + 2, external_id=f"{prefix}-{i}", priority=priorities[i % 7], text=text_)


@contextmanager
def _servers(data: Path) -> Iterator[tuple[str, str]]:
    """The server URLs: the configured ones, else embedded servers under ``data``."""
    db, broker = os.environ.get("BUDGETQ_DATABASE_URL"), os.environ.get("BUDGETQ_REDIS_URL")
    handles: tuple[Any, ...] = ()
    if db is None or broker is None:
        from budgetq.devtools.embedded import ensure_servers

        servers = ensure_servers(db, broker, data)
        db, broker, handles = servers.database_url, servers.redis_url, servers.handles
    assert db is not None and broker is not None
    try:
        yield db, broker
    finally:
        del handles


@contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    """A new migrated database on the server, dropped at the end."""
    name = f"budgetq_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(sqlalchemy_url(server_url)).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(sqlalchemy_url(server_url)).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _standin(latency: float) -> Iterator[str]:
    """The stand-in as its own process (its CPU is not the scheduler's), answering after ``latency`` s."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "budgetq.devtools.standin", "--port", "0", "--latency", str(latency)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(10)


def _run_set(
    sessions: sessionmaker[Session],
    settings: Settings,
    app: Any,
    set_id: int,
    cap: Decimal | None,
    timeout_s: float,
) -> dict[str, Any]:
    """Plan the set, enqueue it, wait for the run to end; its batches and the span of its calls."""
    started = time.monotonic()
    # fresh: the capped run and the ceiling send the same set again, and must not reuse its answers.
    planned = plan_run(sessions, settings, set_id, kind="manual", spend_cap_usd=cap, fresh=True)
    plan_s = time.monotonic() - started
    scheduler_rss = _rss_mb()
    assert planned.run_id is not None
    enqueue(app, sessions, planned.batch_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        time.sleep(0.5)
        with transaction(sessions) as session:
            status = run_store.progress(session, planned.run_id).status
        if status != "running":
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"run {planned.run_id} still running after {timeout_s}s")
    with transaction(sessions) as session:
        span = session.execute(
            text(
                "SELECT extract(epoch FROM max(finished_at) - min(started_at)) AS s, count(*) AS calls "
                "FROM llm_calls WHERE run_id = :run"
            ),
            {"run": planned.run_id},
        ).one()
    batches = len(planned.batch_ids)
    seconds = float(span.s or 0.0)
    return {
        "run_id": planned.run_id,
        "status": status,
        "batches": batches,
        "calls": int(span.calls),
        "seconds": round(seconds, 2),
        "batches_per_s": round(batches / seconds, 2) if seconds else None,
        "plan_s": round(plan_s, 2),
        "scheduler_peak_rss_mb": scheduler_rss,
    }


def _ceiling(sessions: sessionmaker[Session], settings: Settings, set_id: int, threads: int) -> float:
    """Batches per second when each answered batch's rows are written by plain SQL, one transaction each."""
    planned = plan_run(sessions, settings, set_id, kind="manual", fresh=True)
    assert planned.run_id is not None
    with transaction(sessions) as session:
        rows = session.execute(
            text(
                "SELECT batch_id, array_agg(issue_id) AS ids FROM batch_issues bi JOIN batches b "
                "ON b.id = bi.batch_id WHERE b.run_id = :run GROUP BY batch_id"
            ),
            {"run": planned.run_id},
        ).all()
    work: queue.Queue[tuple[int, list[int]]] = queue.Queue()
    for row in rows:
        work.put((row.batch_id, list(row.ids)))
    run_id = planned.run_id

    def write() -> None:
        while True:
            try:
                batch_id, ids = work.get_nowait()
            except queue.Empty:
                return
            with transaction(sessions) as session:
                call_id = session.scalar(
                    text(
                        "INSERT INTO llm_calls (run_id, batch_id, attempt, model, mode, request_id, status, "
                        "estimated_input_tokens, input_tokens, output_tokens, max_tokens, context_window, "
                        "cost_usd, started_at, finished_at) VALUES (:run, :batch, 1, 'bench', 'standin', "
                        "'req', 'ok', 4000, 4000, 9000, 16384, 200000, 0.15, now(), now()) RETURNING id"
                    ),
                    {"run": run_id, "batch": batch_id},
                )
                session.execute(
                    text(
                        "INSERT INTO results (run_id, issue_id, batch_id, llm_call_id, category, diagnosis, "
                        "proposed_fix, confidence) SELECT :run, i, :batch, :call, 'null_values', "
                        "'An upstream feed writes empty strings where ids are missing.', "
                        "'SELECT count(*) FROM t WHERE id IS NULL;', 0.8 "
                        "FROM unnest(CAST(:ids AS bigint[])) i"
                    ),
                    {"run": run_id, "batch": batch_id, "call": call_id, "ids": ids},
                )
                session.execute(
                    text(
                        "UPDATE run_issues SET status = 'answered' WHERE run_id = :run AND "
                        "issue_id = ANY(CAST(:ids AS bigint[]))"
                    ),
                    {"run": run_id, "ids": ids},
                )
                session.execute(
                    text("UPDATE batches SET status = 'succeeded', finished_at = now() WHERE id = :b"),
                    {"b": batch_id},
                )

    pool = [threading.Thread(target=write) for _ in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return round(len(rows) / (time.monotonic() - started), 2)


def _size(
    n: int, args: argparse.Namespace, server_url: str, broker_url: str, standin_url: str, data: Path
) -> dict[str, Any]:
    with _fresh_database(server_url) as url:
        env = {
            "BUDGETQ_DATABASE_URL": url,
            "BUDGETQ_REDIS_URL": broker_url,
            "BUDGETQ_MODE": args.mode,
            "ANTHROPIC_BASE_URL": standin_url,
            "BUDGETQ_WORKER_CONCURRENCY": str(args.threads),
            "BUDGETQ_LOG_LEVEL": "WARNING",
        }
        if args.mode == "live":
            env["ANTHROPIC_API_KEY"] = BENCH_KEY  # the stand-in wants a key on live calls, any key
        settings = Settings(
            database_url=url,
            redis_url=broker_url,
            mode=args.mode,
            anthropic_base_url=standin_url,
            anthropic_api_key=SecretStr(BENCH_KEY) if args.mode == "live" else None,
            worker_concurrency=args.threads,
        )
        engine = make_engine(url, pool_size=args.workers * args.threads + 4)
        sessions = make_sessions(engine)
        app = make_celery(settings, broker_url)
        redis.Redis.from_url(broker_url.replace("redis+socket://", "unix://")).flushdb()
        started = time.monotonic()
        report = load_issues(sessions, f"bench-{n}", _texts(n), max_text_chars=10_000)
        load_s = round(time.monotonic() - started, 2)
        set_id = report.set_id
        assert set_id is not None, report
        out: dict[str, Any] = {"n": n, "load_s": load_s}
        if args.plan_only:
            started = time.monotonic()
            planned = plan_run(sessions, settings, set_id, kind="manual")
            enqueue(app, sessions, planned.batch_ids)
            out |= {
                "batches": len(planned.batch_ids),
                "plan_s": round(time.monotonic() - started, 2),
                "scheduler_peak_rss_mb": _rss_mb(),
            }
        else:
            workers = [
                processes.start_worker(env, args.threads, data / f"worker-{n}-{i}.log")
                for i in range(args.workers)
            ]
            try:
                if args.mode == "live" and args.warmup:
                    warm = load_issues(
                        sessions, f"warmup-{n}", _texts(args.warmup, "warmup"), max_text_chars=10_000
                    )
                    assert warm.set_id is not None, warm
                    _run_set(sessions, settings, app, warm.set_id, None, args.timeout)
                free = _run_set(sessions, settings, app, set_id, None, args.timeout)
                capped = _run_set(sessions, settings, app, set_id, NEVER_BINDING_CAP, args.timeout)
                worker_rss = [_rss_mb(w.pid) for w in workers]
            finally:
                for w in workers:
                    processes.stop(w)
            ceiling = _ceiling(sessions, settings, set_id, args.workers * args.threads)
            out |= {
                "batches": free["batches"],
                "seconds": free["seconds"],
                "batches_per_s": free["batches_per_s"],
                "capped_batches_per_s": capped["batches_per_s"],
                "ceiling_batches_per_s": ceiling,
                "plan_s": free["plan_s"],
                "scheduler_peak_rss_mb": _rss_mb(),
                "worker_peak_rss_mb": worker_rss,
                "statuses": [free["status"], capped["status"]],
                "mode": args.mode,
            }
        redis.Redis.from_url(broker_url.replace("redis+socket://", "unix://")).flushdb()
        engine.dispose()
        return out


def main() -> None:
    """Measure each size and print one JSON object per size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--plan-only", action="store_true")
    parser.add_argument("--mode", choices=("live", "standin"), default="live")
    parser.add_argument("--warmup", type=int, default=3000, help="issues of the unmeasured live warm-up run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="budgetq-bench-") as folder:
        data = Path(folder)
        with _servers(data) as (server_url, broker_url), _standin(args.latency) as standin_url:
            for n in args.n:
                print(json.dumps(_size(n, args, server_url, broker_url, standin_url, data)), flush=True)


if __name__ == "__main__":
    main()
