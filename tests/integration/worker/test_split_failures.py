"""Split halves remember their parent's failures: a batch whose answers are never valid costs a bounded
number of paid calls (docs/architecture.md, "The failure rule")."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.faults import FaultPlan
from budgetq.devtools.standin.server import StandIn
from budgetq.settings import Settings
from tests.integration.worker.inline import assert_each_issue_settled_once, make_set, plan_and_drain

pytestmark = pytest.mark.integration


def test_always_invalid_answers_cost_each_inner_node_once_and_each_single_issue_max_failures(
    sessions: sessionmaker[Session], test_settings: Settings, make_standin: Callable[..., StandIn]
) -> None:
    # Given 8 issues planned in one batch, and a stand-in whose every answer is malformed
    n, max_failures = 8, 3
    standin = make_standin(faults=FaultPlan(p_malformed=1.0))
    set_id = make_set(sessions, [i.text for i in islice(seed_issues(), n)])
    settings = test_settings.model_copy(
        update={
            "anthropic_base_url": standin.url,
            "max_issues_per_call": n,
            "batch_max_failures": max_failures,
        }
    )

    # When the run is processed to the end
    planned, _ = plan_and_drain(sessions, settings, set_id)
    assert planned.run_id is not None and len(planned.batch_ids) == 1

    # Then the root is tried max_failures times, each of the n - 2 inner halves once, and each single
    # issue max_failures times: 3 + 6 + 24 = 33 paid calls (it was 3 * (2n - 1) = 45)
    with transaction(sessions) as session:
        calls = session.execute(
            text("SELECT count(*) FROM llm_calls WHERE run_id = :run"), {"run": planned.run_id}
        ).scalar_one()
        per_batch = session.execute(
            text(
                "SELECT b.issue_count, b.parent_id IS NULL AS root, count(c.id) AS calls FROM batches b "
                "LEFT JOIN llm_calls c ON c.batch_id = b.id WHERE b.run_id = :run "
                "GROUP BY b.id, b.issue_count, b.parent_id"
            ),
            {"run": planned.run_id},
        ).all()
    expected = max_failures + (n - 2) + n * max_failures
    assert calls == expected == sum(e["path"] == "/v1/messages" for e in standin.log())
    assert all(b.calls == max_failures for b in per_batch if b.root or b.issue_count == 1)
    assert all(b.calls == 1 for b in per_batch if not b.root and b.issue_count > 1)
    # And every issue failed once, with the reason
    rows = assert_each_issue_settled_once(sessions, planned.run_id)
    assert len(rows) == n and all(r.status == "failed" and "no valid entry" in r.reason for r in rows)
