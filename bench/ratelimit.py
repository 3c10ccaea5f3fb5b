"""Three worker processes share one rate limit against the stand-in's enforced input-token limit.

The stand-in enforces L input tokens per window (uncached input plus cache writes, like the API) and
answers 429 beyond it; the workers' Redis limiter is configured with the same L. Measured from the
stand-in's own request log over whole windows: the fullest window (must stay within L + 5%), the
share of calls refused with 429 (under 1%) and the input tokens achieved per window (at least 90%
of L).

Run: ``uv run python bench/ratelimit.py`` (60-second windows, 4 minutes; ``--window 10 --minutes 1``
for a quick look). Starts embedded PostgreSQL and Redis under ``--data-dir`` unless
``BUDGETQ_DATABASE_URL`` / ``BUDGETQ_REDIS_URL`` are set. Ends with one JSON object: ``limit``,
``window_s``, ``achieved_per_min``, ``max_window``, ``rate_429``, ``calls``, ``seconds``.

``tests/faults/test_shared_rate_limit.py`` runs the same scenario with 10-second windows: every
figure is per window, so a 10-second window with L/6 tokens is the same test at one sixth the time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from budgetq.adapters.processes import local_workers as processes  # noqa: E402
from budgetq.adapters.queue.celery_app import make_celery  # noqa: E402
from budgetq.adapters.store.engine import make_engine, make_sessions  # noqa: E402
from budgetq.devtools.standin.server import RateLimits, StandIn, StandInConfig  # noqa: E402
from budgetq.domain.limits import WindowFigures, window_figures  # noqa: E402
from budgetq.services.planning import enqueue, plan_run  # noqa: E402
from budgetq.settings import Settings  # noqa: E402
from tests.integration.pipeline import make_seed_set  # noqa: E402

SEED_ISSUES = 3_824


@dataclass(frozen=True)
class Scenario:
    """The shape of the run: limit per window, window, how long, how many workers and threads."""

    limit: int
    window_s: float
    seconds: float
    workers: int = 3
    concurrency: int = 4
    latency_s: float = 0.3
    issues_per_call: int = 5
    issues: int = 3_800
    skew_s: float | None = None  # the limiter's extra hold; default 2% of the window


def _wait_ready(logs: list[Path], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() and "ready." in p.read_text(errors="replace") for p in logs):
        if time.monotonic() > deadline:
            raise SystemExit(f"workers not ready after {timeout_s:.0f}s; see {logs}")
        time.sleep(0.2)


def run_scenario(database_url: str, broker_url: str, scenario: Scenario, log_dir: Path) -> WindowFigures:
    """Run ``scenario`` against a fresh stand-in and return the figures measured from its log."""
    standin = StandIn(
        StandInConfig(
            latency_s=scenario.latency_s,
            limits=RateLimits(input_tpm_limit=scenario.limit, window_s=scenario.window_s),
        )
    )
    standin.start()
    skew = scenario.skew_s if scenario.skew_s is not None else 0.02 * scenario.window_s
    env = {
        "BUDGETQ_DATABASE_URL": database_url,
        "BUDGETQ_REDIS_URL": broker_url,
        "BUDGETQ_MODE": "standin",
        "ANTHROPIC_BASE_URL": standin.url,
        "BUDGETQ_RATE_LIMIT_INPUT_TPM": str(scenario.limit),
        "BUDGETQ_RATE_LIMIT_WINDOW_S": str(scenario.window_s),
        "BUDGETQ_RATE_LIMIT_SKEW_S": str(skew),
        "BUDGETQ_RETRY_BASE_S": "0.05",
    }
    logs = [log_dir / f"ratelimit-worker-{i}.log" for i in range(scenario.workers)]
    workers = [processes.start_worker(env, scenario.concurrency, log) for log in logs]
    engine = make_engine(database_url, pool_size=4)
    try:
        _wait_ready(logs)
        settings = Settings(database_url=database_url, redis_url=broker_url, mode="standin").model_copy(
            update={"max_issues_per_call": scenario.issues_per_call}
        )
        sessions = make_sessions(engine)
        app = make_celery(settings, broker_url)
        # The seed has 3,824 issues: a longer scenario plans it several times over (one run each).
        for first in range(0, scenario.issues, SEED_ISSUES):
            count = min(SEED_ISSUES, scenario.issues - first)
            set_id = make_seed_set(sessions, f"ratelimit-{uuid.uuid4().hex[:8]}", count)
            planned = plan_run(sessions, settings, set_id, kind="manual")
            enqueue(app, sessions, planned.batch_ids)
        app.close()
        start = _first_call(standin)
        time.sleep(max(0.0, start + scenario.seconds - time.time()))
    finally:
        for worker in workers:
            processes.stop(worker, timeout=30)
        engine.dispose()
        standin.stop()
    events = [
        (
            float(e["received_at"]),
            int(e["input_tokens"]) + int(e["cache_creation_input_tokens"]),
            e["status"] == 429,
        )
        for e in standin.log()
        if e["path"] == "/v1/messages" and e["status"] in (200, 429)
    ]
    windows = int(scenario.seconds // scenario.window_s)
    return window_figures(events, scenario.limit, scenario.window_s, start, windows)


def _first_call(standin: StandIn, timeout_s: float = 120) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        calls = [e for e in standin.log() if e["path"] == "/v1/messages"]
        if calls:
            return float(min(e["received_at"] for e in calls))
        if time.monotonic() > deadline:
            raise SystemExit("no call reached the stand-in")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=90_000, help="input tokens per window")
    parser.add_argument(
        "--issues", type=int, default=7_600, help="issues queued (more than the limit lets through)"
    )
    parser.add_argument("--window", type=float, default=60.0, help="window in seconds")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary folder")
    args = parser.parse_args()
    if args.data_dir is None:
        args.data_dir = Path(tempfile.mkdtemp(prefix="budgetq-bench-ratelimit-"))
    from budgetq.devtools.embedded import ensure_servers

    servers = ensure_servers(
        os.environ.get("BUDGETQ_DATABASE_URL"), os.environ.get("BUDGETQ_REDIS_URL"), args.data_dir
    )
    assert servers.database_url is not None and servers.redis_url is not None
    from budgetq.adapters.store.engine import upgrade

    upgrade(servers.database_url)
    scenario = Scenario(limit=args.limit, window_s=args.window, seconds=args.minutes * 60, issues=args.issues)
    began = time.monotonic()
    figures = run_scenario(servers.database_url, servers.redis_url, scenario, args.data_dir)
    per_min = 60.0 / scenario.window_s
    summary = {
        "limit": scenario.limit,
        "window_s": scenario.window_s,
        "achieved_per_min": round(figures.achieved_per_window * per_min),
        "achieved_share": round(figures.achieved_per_window / scenario.limit, 4),
        "max_window": figures.max_window,
        "max_window_share": round(figures.max_window / scenario.limit, 4),
        "rate_429": round(figures.rate_rejected, 4),
        "calls": figures.calls,
        "rejected": figures.rejected,
        "seconds": round(time.monotonic() - began, 1),
    }
    print(json.dumps({"scenario": asdict(scenario)}))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
