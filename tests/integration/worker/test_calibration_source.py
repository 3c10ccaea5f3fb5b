"""Issue 17, point 1: the calibration is learned from billed live calls only, per model."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

import pytest
from pydantic import SecretStr

from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.server import StandIn
from budgetq.domain.catalog import get_model
from budgetq.services.planning import planning_calibration
from budgetq.settings import Settings
from tests.integration.worker.conftest import OwnDatabase
from tests.integration.worker.inline import make_set, plan_and_drain

pytestmark = pytest.mark.integration


def test_calls_nobody_billed_never_teach_the_calibration(
    own_database: OwnDatabase, test_settings: Settings, make_standin: Callable[..., StandIn]
) -> None:
    # Given a stand-in billing 1.0 token per cl100k token (far under the catalog's default), and a
    # database whose only provenance is 4 answered stand-in calls of the model
    standin = make_standin(token_ratio=1.0)
    sessions = own_database.sessions
    settings = test_settings.model_copy(
        update={
            "database_url": own_database.url,
            "anthropic_base_url": standin.url,
            "calibration_min_samples": 3,
            "max_issues_per_call": 1,
            "mode": "standin",
        }
    )
    texts = [i.text for i in islice(seed_issues(), 8)]
    plan_and_drain(sessions, settings, make_set(sessions, texts[:4]))
    spec = get_model(settings.model)

    # Then the next run is planned at the catalog's calibration, not the stand-in's ratio
    with transaction(sessions) as session:
        assert planning_calibration(session, spec, settings) == spec.calibration

    # When 4 live calls (billed: a key, the live mode) answer, at 1.0 token per cl100k token
    live = settings.model_copy(update={"mode": "live", "anthropic_api_key": SecretStr("sk-test-live")})
    plan_and_drain(sessions, live, make_set(sessions, texts[4:]))

    # Then the calibration is learned from them
    with transaction(sessions) as session:
        learned = planning_calibration(session, spec, settings)
    assert learned == pytest.approx(1.0, rel=0.05)
    # And another model is untouched by them
    other = get_model("claude-haiku-4-5")
    with transaction(sessions) as session:
        assert planning_calibration(session, other, settings) == other.calibration
