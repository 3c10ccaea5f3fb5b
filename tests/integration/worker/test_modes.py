"""Record and replay: a run recorded against the stand-in replays with the stand-in gone, giving the same
results, and its calls are kept as would-have-cost at what they would have cost."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.server import FaultPlan, StandIn
from budgetq.settings import Settings
from tests.integration.worker.conftest import OwnDatabase
from tests.integration.worker.inline import assert_each_issue_settled_once, make_set, plan_and_drain

pytestmark = pytest.mark.integration

RESULTS_SQL = text(
    "SELECT issue_id, category, diagnosis, proposed_fix, confidence FROM results WHERE run_id = :run "
    "ORDER BY issue_id"
)
CALLS_SQL = text(
    "SELECT request_id, status, cost_usd, would_have_cost, mode FROM llm_calls WHERE run_id = :run "
    "ORDER BY id"
)


def test_a_recorded_run_replays_without_the_network_with_the_same_results(
    own_database: OwnDatabase,
    test_settings: Settings,
    make_standin: Callable[..., StandIn],
    tmp_path: Path,
) -> None:
    # Given a stand-in that is overloaded on its first two requests, and 30 issues in 3 batches
    standin = make_standin()
    standin.set_faults(FaultPlan(fail_first_n=2))
    sessions = own_database.sessions
    set_id = make_set(sessions, [i.text for i in islice(seed_issues(), 30)])
    base: dict[str, Any] = {
        "database_url": own_database.url,
        "anthropic_base_url": standin.url,
        "cassette_dir": tmp_path / "cassettes",
        "max_issues_per_call": 10,
    }

    # When the run is recorded
    record = test_settings.model_copy(update=base | {"mode": "record"})
    recorded, _ = plan_and_drain(sessions, record, set_id)
    assert recorded.run_id is not None
    assert len(list((tmp_path / "cassettes").glob("*.json"))) >= 3

    # And, with the stand-in stopped, a second run of the same set is replayed
    standin.stop()
    replay = test_settings.model_copy(update=base | {"mode": "replay"})
    replayed, outcomes = plan_and_drain(sessions, replay, set_id)
    assert replayed.run_id is not None

    # Then both runs answered every issue, with the same results
    assert_each_issue_settled_once(sessions, recorded.run_id)
    assert_each_issue_settled_once(sessions, replayed.run_id)
    assert outcomes["succeeded"] == 3
    with transaction(sessions) as session:
        first = session.execute(RESULTS_SQL, {"run": recorded.run_id}).all()
        second = session.execute(RESULTS_SQL, {"run": replayed.run_id}).all()
        recorded_calls = session.execute(CALLS_SQL, {"run": recorded.run_id}).all()
        replayed_calls = session.execute(CALLS_SQL, {"run": replayed.run_id}).all()
    assert len(first) == 30 and first == second
    # And the replay met the recorded overloads again, with the recorded request ids and costs
    assert [c.status for c in replayed_calls] == [c.status for c in recorded_calls]
    assert sum(c.status == "retryable_error" for c in replayed_calls) == 2
    assert [(c.request_id, c.cost_usd) for c in replayed_calls] == [
        (c.request_id, c.cost_usd) for c in recorded_calls
    ]
    # And every replayed call is marked would-have-cost, at what it would have cost
    assert all(c.mode == "replay" and c.would_have_cost for c in replayed_calls)
    assert sum(c.cost_usd for c in replayed_calls) > 0
