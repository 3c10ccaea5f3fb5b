"""A task that outlives the broker's visibility timeout is delivered again, and nothing runs twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from budgetq.domain.reaper import ReapReport
from tests.faults.conftest import Rig, assert_every_issue_ended_once, wait_until_settled

pytestmark = pytest.mark.faults


def test_a_task_redelivered_while_its_call_runs_is_refused_by_the_lease(
    rig: Rig, reaper: list[ReapReport], tmp_path: Path
) -> None:
    # Given calls that take 6 s, and a broker that redelivers unacknowledged tasks after 2 s
    rig.standin.config.latency_s = 6.0
    for _ in range(2):
        rig.worker(3, BUDGETQ_VISIBILITY_TIMEOUT_S="2", BUDGETQ_LOG_LEVEL="INFO")
    rig.wait_ready(tmp_path, 2)

    # When a run of 3 batches is processed
    run_id, batch_ids = rig.plan(60, "visibility")
    o = wait_until_settled(rig.sessions, run_id, timeout_s=60)

    # Then the tasks were delivered again mid-call, and each redelivery found the batch leased
    logs = "".join(f.read_text(errors="replace") for f in tmp_path.glob("worker-*.log"))
    assert logs.count("'not-claimed'") >= len(batch_ids)
    # And each batch was called once and answered once
    calls = [e for e in rig.standin.log() if e["path"] == "/v1/messages"]
    assert len(calls) == len(batch_ids) == 3
    assert_every_issue_ended_once(o)
    assert o.answered == o.issues == 60
