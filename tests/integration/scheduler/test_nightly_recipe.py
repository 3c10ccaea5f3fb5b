"""The documented nightly recipe for dbt users, end to end: `dbt test` results → `budgetq load target/
--set NAME --snapshot --nightly` → the nightly run on real workers → cost by owner and tag.

It runs on the hand-made fixture project, and also on a genuine dbt project of ``BUDGETQ_REALDATA_DIR``
when that folder is there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.queue.celery_app import make_celery
from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.services.nightly import plan_nightly
from budgetq.settings import Settings
from tests.integration.conftest import Budgetq
from tests.integration.pipeline import wait_for_run

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "loaders" / "dbt_target"
_REAL = os.environ.get("BUDGETQ_REALDATA_DIR")
PROJECTS = [pytest.param(FIXTURE, id="fixture")]
if _REAL and (Path(_REAL) / "dbt" / "nikhil_dq_validation_framework").is_dir():
    PROJECTS.append(pytest.param(Path(_REAL) / "dbt" / "nikhil_dq_validation_framework", id="real-dbt-1.12"))


@pytest.mark.parametrize("project", PROJECTS)
def test_dbt_results_load_as_a_nightly_snapshot_run_and_cost_by_owner_and_tag(
    project: Path,
    tmp_path: Path,
    run_budgetq: Budgetq,
    test_settings: Settings,
    settings_env: dict[str, str],
    sessions: sessionmaker[Session],
    start_worker: Callable[..., Any],
) -> None:
    # Given last night's `dbt test` results in a target/ folder
    target = tmp_path / "warehouse" / "target"
    shutil.copytree(project, target)
    set_name = f"warehouse-{uuid.uuid4().hex[:8]}"

    # When the recipe's load runs, then the nightly planning and the workers
    loaded = run_budgetq(
        "load", str(target.parent), "--set", set_name, "--snapshot", "--nightly", "--json", **settings_env
    )
    assert loaded.code == 0, loaded
    data = json.loads(loaded.stdout)
    assert data["inserted"] == data["failing"] > 0
    start_worker(concurrency=2)
    app = make_celery(test_settings, test_settings.redis_url or "")
    night = dt.date(2032, 1, 1) + dt.timedelta(days=uuid.uuid4().int % 3000)
    with transaction(sessions) as session:
        set_id = issue_store.set_id_by_name(session, set_name)
    (outcome,) = [o for o in plan_nightly(sessions, test_settings, app, night) if o.set_id == set_id]
    assert outcome.run_id is not None
    progress = wait_for_run(sessions, outcome.run_id)

    # Then every loaded check was answered, and its cost is reported by owner and by source
    assert progress.status == "succeeded", progress
    report = run_budgetq("report", "cost", "--by", "source", "--format", "json", **settings_env)
    assert report.code == 0, report
    rows = json.loads(report.stdout)
    records = rows["rows"] if isinstance(rows, dict) and "rows" in rows else rows
    assert any(r.get("source") == "dbt" for r in records), rows
    for by in ("owner", "tag", "dataset"):
        assert run_budgetq("report", "cost", "--by", by, "--format", "json", **settings_env).code == 0

    # And the next night's identical load keeps every check as it is: nothing is due again
    again = run_budgetq("load", str(target.parent), "--set", set_name, "--snapshot", "--json", **settings_env)
    assert json.loads(again.stdout)["unchanged"] == data["inserted"]
