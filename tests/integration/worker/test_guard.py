"""The honest guard: with an estimator far below the model's real token counts, no call ever breaks
billed input + max_tokens <= 75% of the window, and a batch whose exact count breaks it is split unsent."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from itertools import islice
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.server import StandIn
from budgetq.domain.catalog import get_model
from budgetq.services.planning import enqueue, plan_run, planning_calibration
from budgetq.settings import Settings
from tests.integration.pipeline import make_seed_set, wait_for_run
from tests.integration.worker.conftest import OwnDatabase
from tests.integration.worker.inline import make_set, plan_and_drain

pytestmark = pytest.mark.integration

# The stand-in bills 2 tokens per cl100k token while the run is planned at 1.0: the planner's per-issue
# estimate (which pads each issue by 40 tokens) comes out about 30% low, the worker's own estimate of
# the rendered prompt about 45% low. The window is small enough that the input, not the item count
# or the output allowance, fills each planned batch up to the guard.
# Calibration learns only from billed live calls, so these runs are live calls that the stand-in answers.
LIVE: dict[str, Any] = {"mode": "live", "anthropic_api_key": SecretStr("test-key")}
LIVE_ENV = {"BUDGETQ_MODE": "live", "ANTHROPIC_API_KEY": "test-key"}
TOKEN_RATIO = 2.0
WINDOW = 33_400
GUARD = int(WINDOW * 0.75)
GUARD_SETTINGS: dict[str, Any] = {
    "calibration": 1.0,
    "context_window": WINDOW,
    "max_tokens_per_call": 16_000,
    "output_tokens_per_issue": 160,
    "max_issues_per_call": 1_000,
}

OVER_GUARD_SQL = text(
    "SELECT count(*) AS calls, "
    "count(*) FILTER (WHERE billed_input_tokens + max_tokens > 0.75 * context_window) AS over_guard, "
    "max(billed_input_tokens + max_tokens) AS largest, "
    "min(billed_input_tokens::float / estimated_input_tokens) AS least_underestimate "
    "FROM llm_calls WHERE run_id = :run AND status = 'ok'"
)


def test_a_seed_run_with_an_estimator_far_too_low_has_no_call_over_the_guard(
    own_database: OwnDatabase,
    test_settings: Settings,
    start_worker: Any,
    make_standin: Callable[..., StandIn],
) -> None:
    # Given the seed's 3,824 issues, a stand-in counting 2 tokens per cl100k token with a 33,400 window,
    # and a run planned at calibration 1.0 (far too low) on a database with no provenance yet
    standin = make_standin(token_ratio=TOKEN_RATIO, context_window=WINDOW)
    sessions = own_database.sessions
    settings = test_settings.model_copy(
        update={"database_url": own_database.url, "anthropic_base_url": standin.url, **LIVE, **GUARD_SETTINGS}
    )
    set_id = make_seed_set(sessions, f"guard-{uuid.uuid4().hex[:8]}")
    start_worker(
        concurrency=8, BUDGETQ_DATABASE_URL=own_database.url, ANTHROPIC_BASE_URL=standin.url, **LIVE_ENV
    )

    # When the run is planned and processed by a real worker
    planned = plan_run(sessions, settings, set_id, kind="manual")
    assert planned.run_id is not None
    enqueue(make_celery(settings, settings.redis_url or ""), sessions, planned.batch_ids)
    progress = wait_for_run(sessions, planned.run_id, timeout_s=240)

    # Then every issue is answered
    assert progress.status == "succeeded", progress
    assert progress.issues == {"answered": 3_824}
    with transaction(sessions) as session:
        calls = session.execute(OVER_GUARD_SQL, {"run": planned.run_id}).one()
        split_by_count = session.execute(
            text(
                "SELECT b.id, array_agg(bi.issue_id) AS issue_ids FROM batches b "
                "JOIN batch_issues bi ON bi.batch_id = b.id WHERE b.run_id = :run AND b.status = 'split' "
                "AND b.last_error LIKE 'counted input%' GROUP BY b.id"
            ),
            {"run": planned.run_id},
        ).all()
    # And the SQL over llm_calls finds no call whose billed input + max_tokens exceeds 75% of the window
    assert calls.calls > 0 and calls.over_guard == 0 and calls.largest <= GUARD, calls
    # And that is not luck: the estimate of every call was at least a quarter below what was billed
    assert calls.least_underestimate >= 1 / 0.75, calls
    # And batches planned on that estimate were counted exactly, found over the guard, split, never sent
    log = standin.log()
    counted = {frozenset(e["issue_ids"]) for e in log if e["path"] == "/v1/messages/count_tokens"}
    sent = [e for e in log if e["path"] == "/v1/messages"]
    over = {frozenset(row.issue_ids) for row in split_by_count}
    assert over and over <= counted
    assert not over & {frozenset(e["issue_ids"]) for e in sent}
    # And the stand-in never received a messages request over the guard by its own count
    assert sent and max(e["counted_input_tokens"] + e["max_tokens"] for e in sent) <= GUARD

    # And the next run of this model is planned at the calibration learned from these calls
    with transaction(sessions) as session:
        unpinned = settings.model_copy(update={"calibration": None})
        learned = planning_calibration(session, get_model(settings.model), unpinned)
    assert learned == pytest.approx(TOKEN_RATIO, rel=0.05)


def test_once_provenance_confirms_the_calibration_only_batches_near_the_guard_are_counted(
    own_database: OwnDatabase, test_settings: Settings, make_standin: Callable[..., StandIn]
) -> None:
    # Given a model whose calibration 3 answered calls have confirmed (the stand-in bills 1.3 tokens per
    # cl100k token, under the catalog's 1.35)
    standin = make_standin()
    sessions = own_database.sessions
    settings = test_settings.model_copy(
        update={
            "database_url": own_database.url,
            "anthropic_base_url": standin.url,
            "calibration_min_samples": 3,
            **LIVE,
        }
    )
    warm_up = make_set(sessions, [i.text for i in islice(seed_issues(), 3)])
    plan_and_drain(sessions, settings.model_copy(update={"max_issues_per_call": 1}), warm_up)
    assert sum(e["path"].endswith("count_tokens") for e in standin.log()) == 3  # unconfirmed: all counted
    standin.reset()
    set_id = make_set(sessions, [i.text for i in islice(seed_issues(), 3, 23)])

    # When a batch far from the guard is processed (about 3% of a 750,000-token guard), then it is sent
    # on its estimate, with no exact count
    plan_and_drain(sessions, settings, set_id)
    assert [e["path"] for e in standin.log()] == ["/v1/messages"]

    # When the same batch is processed with a margin that puts it within reach of the guard, then the
    # exact count is asked before the call
    standin.reset()
    plan_and_drain(sessions, settings.model_copy(update={"count_tokens_margin": 0.02}), set_id)
    assert [e["path"] for e in standin.log()] == ["/v1/messages/count_tokens", "/v1/messages"]


def test_a_gateway_without_count_tokens_falls_back_to_the_estimate_with_a_smaller_fill(
    own_database: OwnDatabase,
    test_settings: Settings,
    make_standin: Callable[..., StandIn],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a gateway that answers 404 to count_tokens, and seed issues packed up to the guard of a
    # 33,400-token window at the calibration the stand-in bills (so every batch is near the guard)
    standin = make_standin(token_ratio=1.3, context_window=WINDOW, count_tokens_status=404)
    sessions = own_database.sessions
    settings = test_settings.model_copy(
        update={
            "database_url": own_database.url,
            "anthropic_base_url": standin.url,
            **LIVE,
            **GUARD_SETTINGS,
            "calibration": 1.35,
        }
    )
    set_id = make_set(sessions, [i.text for i in islice(seed_issues(), 300)])

    # When the run is processed
    with caplog.at_level("WARNING", logger="budgetq.worker"):
        planned, outcomes = plan_and_drain(sessions, settings, set_id)

    # Then no batch failed for the missing endpoint: each was sent on its estimate under a smaller fill
    # (or split until it fit), every issue is answered, and no call went over the guard
    assert planned.run_id is not None
    assert "failed" not in outcomes, outcomes
    with transaction(sessions) as session:
        row = session.execute(OVER_GUARD_SQL, {"run": planned.run_id}).one()
        statuses = dict(
            session.execute(
                text("SELECT status, count(*) FROM run_issues WHERE run_id = :r GROUP BY status"),
                {"r": planned.run_id},
            ).all()
        )
    assert statuses == {"answered": 300}, statuses
    assert row.calls > 0 and row.over_guard == 0, row
    # And the fallback was said once in the log, not once per batch
    said = [r for r in caplog.records if "count_tokens" in r.getMessage() and "estimate" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
