"""Nothing that goes wrong after a 200 may lose the paid answer or leave its spend reservation held
(docs/failure-semantics.md, "After the answer arrived")."""

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


@pytest.mark.parametrize("value", ["1e400", "nan", "-inf", "12abc"])
def test_an_absurd_rate_limit_header_neither_loses_the_answer_nor_leaks_the_reservation(
    sessions: sessionmaker[Session],
    test_settings: Settings,
    make_standin: Callable[..., StandIn],
    value: str,
) -> None:
    # Given a stand-in whose every reply announces an absurd request limit
    standin = make_standin(
        extra_headers={
            "anthropic-ratelimit-requests-limit": value,
            "anthropic-ratelimit-input-tokens-limit": "400000",
            "anthropic-ratelimit-input-tokens-remaining": value,
        }
    )
    set_id = make_set(sessions, [i.text for i in islice(seed_issues(), 6)])
    settings = test_settings.model_copy(update={"anthropic_base_url": standin.url, "max_issues_per_call": 6})

    # When the run is processed
    planned, outcomes = plan_and_drain(sessions, settings, set_id)
    assert planned.run_id is not None and len(planned.batch_ids) == 1

    # Then the one paid call is recorded once, its answers are written, and its reservation is settled
    with transaction(sessions) as session:
        calls = session.execute(
            text("SELECT count(*) FROM llm_calls WHERE run_id = :run"), {"run": planned.run_id}
        ).scalar_one()
        reservations = session.execute(
            text("SELECT status, actual_usd FROM spend_reservations WHERE run_id = :run"),
            {"run": planned.run_id},
        ).all()
    assert outcomes == {"succeeded": 1}
    assert calls == 1 == sum(e["path"] == "/v1/messages" for e in standin.log())
    assert [r.status for r in reservations] == ["settled"] and reservations[0].actual_usd > 0
    rows = assert_each_issue_settled_once(sessions, planned.run_id)
    assert all(r.status == "answered" for r in rows)
