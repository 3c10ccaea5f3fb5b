"""Split on overflow: a batch the API finds too long is halved (keeping its priority) until it fits,
and an issue that is too long on its own fails with the API's reason."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.server import StandIn
from budgetq.settings import Settings
from tests.integration.worker.inline import assert_each_issue_settled_once, make_set, plan_and_drain

pytestmark = pytest.mark.integration

# An issue of about 16,000 cl100k tokens: with the stand-in's 1.3 ratio, 20,800 tokens on its own.
HUGE = "The nightly load of fact_orders repeats every row of the staging table again and again. " * 1_000


def test_prompt_is_too_long_splits_the_batch_and_a_single_issue_still_too_long_fails(
    sessions: sessionmaker[Session], test_settings: Settings, make_standin: Callable[..., StandIn]
) -> None:
    # Given a stand-in whose window (20,000 tokens) is far smaller than the catalog's, so the API, not
    # the guard, rejects the request; and 30 ordinary issues planned in one batch with one huge issue
    standin = make_standin(context_window=20_000)
    texts = [i.text for i in islice(seed_issues(), 30)] + [HUGE]
    set_id = make_set(sessions, texts, priority=15)
    settings = test_settings.model_copy(
        update={"anthropic_base_url": standin.url, "max_tokens_per_call": 4_096, "max_issues_per_call": 100}
    )

    # When the run is processed
    planned, outcomes = plan_and_drain(sessions, settings, set_id)
    assert planned.run_id is not None and len(planned.batch_ids) == 1

    # Then the API said "prompt is too long" and the batch was split, its halves keeping its priority
    too_long = [e for e in standin.log() if e["status"] == 400]
    assert too_long and all(e["error_type"] == "invalid_request_error" for e in too_long)
    with transaction(sessions) as session:
        batches = session.execute(
            text("SELECT status, priority, last_error FROM batches WHERE run_id = :run"),
            {"run": planned.run_id},
        ).all()
    assert {b.priority for b in batches} == {15}
    split = [b for b in batches if b.status == "split"]
    assert split and all("prompt is too long" in b.last_error for b in split)
    # And every ordinary issue was answered; the huge one, too long even alone, failed with the reason
    rows = assert_each_issue_settled_once(sessions, planned.run_id)
    failed = [r for r in rows if r.status == "failed"]
    assert len(failed) == 1 and outcomes["failed"] == 1
    assert "prompt is too long" in failed[0].reason
    assert sum(r.status == "answered" for r in rows) == 30
