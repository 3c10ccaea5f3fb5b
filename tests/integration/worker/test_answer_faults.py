"""Broken answers are never written as results, and every issue still ends answered once or failed with
a reason: malformed, truncated, refused, duplicate-id, invented-id and missing-id answers, and an answer
cut by the context window, each from the stand-in through the worker's batch processing."""

from __future__ import annotations

from itertools import islice

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.answers import diagnose
from budgetq.devtools.standin.server import FaultPlan, StandIn
from budgetq.domain.answers import CATEGORIES
from budgetq.settings import Settings
from tests.integration.worker.inline import assert_each_issue_settled_once, make_set, plan_and_drain

pytestmark = pytest.mark.integration

ANSWER_FAULTS = [
    # (fault as the stand-in logs it, plan)
    ("malformed", FaultPlan(p_malformed=0.5)),
    ("truncated", FaultPlan(p_truncated=0.5)),
    ("refusal", FaultPlan(p_refusal=0.3)),
    ("duplicate_ids", FaultPlan(p_duplicate_ids=0.6)),
    ("invented_ids", FaultPlan(p_invented_ids=0.6)),
    ("missing_ids", FaultPlan(p_missing_ids=0.6)),
    ("context_exceeded", FaultPlan(p_context_exceeded=0.5)),
]


@pytest.mark.parametrize(("fault", "plan"), ANSWER_FAULTS, ids=[f for f, _ in ANSWER_FAULTS])
def test_a_broken_answer_is_never_written_and_every_issue_ends_settled(
    fault: str,
    plan: FaultPlan,
    sessions: sessionmaker[Session],
    test_settings: Settings,
    standin: StandIn,
) -> None:
    # Given 60 issues in batches of 10 and a stand-in that breaks answers this way
    texts = [i.text for i in islice(seed_issues(), 60)]
    set_id = make_set(sessions, texts)
    standin.set_faults(plan)
    settings = test_settings.model_copy(update={"max_issues_per_call": 10})

    # When the run is processed
    planned, _ = plan_and_drain(sessions, settings, set_id)
    assert planned.run_id is not None

    # Then the fault really happened
    log = standin.log()
    assert any(fault in entry["faults"] for entry in log), [e["faults"] for e in log]
    # And every issue has exactly one result, or none and a failure reason
    rows = assert_each_issue_settled_once(sessions, planned.run_id)
    assert {r.issue_id for r in rows} == set(_issue_ids(sessions, set_id))
    # And every result is the model's own complete, first answer for that issue of the batch
    with transaction(sessions) as session:
        results = session.execute(
            text(
                "SELECT r.issue_id, i.text, r.category, r.diagnosis, r.proposed_fix, r.confidence, "
                "bi.batch_id IS NOT NULL AS in_its_batch "
                "FROM results r JOIN issues i ON i.id = r.issue_id "
                "LEFT JOIN batch_issues bi ON bi.batch_id = r.batch_id AND bi.issue_id = r.issue_id "
                "WHERE r.run_id = :run"
            ),
            {"run": planned.run_id},
        ).all()
    assert results
    for r in results:
        expected = diagnose(r.issue_id, r.text, CATEGORIES)
        assert r.in_its_batch
        assert (r.category, r.diagnosis, r.proposed_fix, r.confidence) == (
            expected["category"],
            expected["diagnosis"],
            expected["proposed_fix"],
            expected["confidence"],
        )


def _issue_ids(sessions: sessionmaker[Session], set_id: int) -> list[int]:
    with transaction(sessions) as session:
        return list(session.scalars(text("SELECT id FROM issues WHERE set_id = :s"), {"s": set_id}))


def test_a_single_issue_whose_answer_never_fits_fails_with_the_reason(
    sessions: sessionmaker[Session], test_settings: Settings, standin: StandIn
) -> None:
    # Given 8 issues and a stand-in that cuts every answer at max_tokens (half of it arrives)
    set_id = make_set(sessions, [i.text for i in islice(seed_issues(), 8)])
    standin.set_faults(FaultPlan(p_truncated=1.0))

    # When the run is processed
    planned, outcomes = plan_and_drain(sessions, test_settings, set_id)
    assert planned.run_id is not None

    # Then the complete entries of each cut answer were kept and the rest split in halves, down to
    # single issues whose answer cannot arrive whole: those fail, saying why
    rows = assert_each_issue_settled_once(sessions, planned.run_id)
    answered = [r for r in rows if r.status == "answered"]
    failed = [r for r in rows if r.status == "failed"]
    assert answered and failed
    assert all("stop_reason=max_tokens" in r.reason for r in failed)
    assert outcomes["failed"] == len(failed)
