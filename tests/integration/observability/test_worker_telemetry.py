"""A running worker process exposes Prometheus metrics and writes one JSON event per call attempt."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.standin.faults import FaultPlan
from budgetq.settings import Settings
from tests.integration.pipeline import run_on_workers

API_KEY = "sk-ant-test-" + uuid.uuid4().hex
SECRET_TEXT = "customer-ledger-" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint, keyed by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        body = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_a_workers_metrics_and_logs_account_for_every_attempt_without_keys_or_issue_text(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    start_worker: Any,
    standin: Any,
    tmp_path: Path,
) -> None:
    # Given a worker serving metrics, an API key, issues whose text must stay private, and one 529 reply
    port = _free_port()
    start_worker(
        concurrency=2, BUDGETQ_METRICS_PORT=str(port), ANTHROPIC_API_KEY=API_KEY, BUDGETQ_LOG_LEVEL="INFO"
    )
    standin.set_faults(FaultPlan(fail_first_n=1, retry_after_range=(0, 0)))
    with transaction(sessions) as session:
        set_id = issue_store.create_set(session, f"telemetry-{uuid.uuid4().hex[:8]}")
        issue_store.insert_issues(
            session,
            set_id,
            [
                issue_store.NewIssue(10, f"Null rate of {SECRET_TEXT}.amount_{i} rose to {i}% overnight.")
                for i in range(120)
            ],
        )

    # When a run of those issues is processed
    planned, progress = run_on_workers(sessions, test_settings, set_id)
    assert progress.status == "succeeded", progress
    with transaction(sessions) as session:
        calls = session.execute(
            text(
                "SELECT status, request_id, batch_id, cost_usd, output_tokens, utilization "
                "FROM llm_calls WHERE run_id = :run"
            ),
            {"run": planned.run_id},
        ).all()
    ok = [c for c in calls if c.status == "ok"]
    model = test_settings.model

    # Then the metrics endpoint counts each attempt by outcome, with its tokens, cost and utilization
    samples = _samples(port)
    assert samples[("budgetq_llm_calls_total", (("model", model), ("outcome", "ok")))] == len(ok)
    assert samples[("budgetq_llm_calls_total", (("model", model), ("outcome", "retryable_error")))] == 1
    assert samples[("budgetq_llm_retries_total", (("model", model),))] >= 1
    output = samples[("budgetq_llm_tokens_total", (("kind", "output"), ("model", model)))]
    assert output == sum(c.output_tokens for c in ok)
    cost = samples[("budgetq_llm_cost_usd_total", (("billed", "false"), ("model", model)))]
    assert abs(cost - float(sum(c.cost_usd for c in ok))) < 1e-6
    assert samples[("budgetq_llm_call_utilization_count", (("model", model),))] == len(ok)
    assert samples[("budgetq_queue_depth", (("queue", "llm"),))] == 0
    assert samples[("budgetq_batches_total", (("result", "succeeded"),))] == len(planned.batch_ids)

    # And the log holds one JSON event per attempt, with its run, batch and request id
    log = "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker-*.log")))
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    attempts = [e for e in events if e.get("event") == "llm_call_attempt"]
    assert len(attempts) == len(calls)
    assert {(e["run_id"], e["batch_id"], e["request_id"]) for e in attempts} == {
        (planned.run_id, c.batch_id, c.request_id) for c in calls
    }
    # And nothing logged at INFO or above holds the API key or an issue's text
    assert API_KEY not in log
    assert SECRET_TEXT not in log
