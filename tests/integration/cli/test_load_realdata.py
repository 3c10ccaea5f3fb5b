"""Every genuine tool result file under ``BUDGETQ_REALDATA_DIR`` loads, one issue per non-passing check.

The folder (genuine, unedited files of public projects, described by its SOURCES.md) is not part of
the repository: set ``BUDGETQ_REALDATA_DIR`` to it (``.ci/run`` does when it is there).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.models import Issue, IssueSet
from tests.integration.conftest import Budgetq

_DIR = os.environ.get("BUDGETQ_REALDATA_DIR")
REALDATA = Path(_DIR) if _DIR else None
pytestmark = pytest.mark.skipif(
    REALDATA is None or not REALDATA.is_dir(),
    reason="BUDGETQ_REALDATA_DIR is unset or not a folder: no genuine tool files to load",
)

# The non-passing checks of each file, as its SOURCES.md counts them.
EXPECTED = {
    "dbt/nikhil_dq_validation_framework": 3,
    "dbt/opendatahub_data_product_template": 3,
    "dbt/ashhimself_dbt_sandbox_snowflake": 2,
    "great_expectations/gx0.15_agfcapco_first_gx.json": 3,
    "great_expectations/gx0.18_callmeeric5_dsp_final.json": 8,
    "great_expectations/gx1.8_kealeee_olist.json": 1,
    "great_expectations/gx1.3_mathtosetto_taxi.json": 1,
    "elementary/insightahead_elementary_output.json": 4,
    "elementary/mdakilahmed_elementary_output.json": 17,
    "re_data/near_dbt_overview.json": 3,
}


def _loadable() -> list[str]:
    """Every result file of the folder, as a path relative to it (a dbt project is its folder)."""
    if REALDATA is None or not REALDATA.is_dir():
        return []
    found = {str(p.parent.relative_to(REALDATA)) for p in REALDATA.glob("dbt/*/run_results.json")}
    for tool in ("great_expectations", "elementary"):
        found |= {str(p.relative_to(REALDATA)) for p in (REALDATA / tool).glob("*.json")}
    found |= {str(p.relative_to(REALDATA)) for p in REALDATA.glob("re_data/*overview.json")}
    return sorted(found)


def test_every_known_file_is_there() -> None:
    assert set(EXPECTED) <= set(_loadable())


@pytest.mark.parametrize("relative", _loadable())
def test_a_genuine_file_loads_one_issue_per_failing_check_and_names_it(
    relative: str, run_budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session]
) -> None:
    assert REALDATA is not None
    set_name = f"real-{uuid.uuid4().hex[:8]}"
    outcome = run_budgetq(
        "load",
        str(REALDATA / relative),
        "--set",
        set_name,
        "--snapshot",
        "--json",
        BUDGETQ_DATABASE_URL=database_url,
    )
    assert outcome.code == 0, outcome
    data = json.loads(outcome.stdout)
    assert data["inserted"] == data["loaded"] == EXPECTED.get(relative, data["failing"])
    assert data["read"] == data["loaded"] + data["skipped_passing"]
    with transaction(sessions) as session:
        rows = session.execute(
            select(Issue.text, Issue.check_name, Issue.dataset, Issue.column_name)
            .join(IssueSet, IssueSet.id == Issue.set_id)
            .where(IssueSet.name == set_name)
        ).all()
    for text, check, dataset, column in rows:
        assert check and check in text
        assert dataset and f"dataset: {dataset}" in text
        if column:
            assert f"column: {column}" in text
        counted = re.search(r"failing rows: ([\d,]+)", text)
        if "Got " in text and " results" in text:
            assert counted, text
    # A second snapshot of the same file changes nothing.
    again = run_budgetq(
        "load",
        str(REALDATA / relative),
        "--set",
        set_name,
        "--snapshot",
        "--json",
        BUDGETQ_DATABASE_URL=database_url,
    )
    assert json.loads(again.stdout)["unchanged"] == data["loaded"]


def test_re_datas_metadata_file_is_refused_with_where_to_look(
    run_budgetq: Budgetq, database_url: str
) -> None:
    assert REALDATA is not None
    metadata = REALDATA / "re_data" / "near_dbt_metadata.json"
    outcome = run_budgetq("load", str(metadata), "--set", "never", BUDGETQ_DATABASE_URL=database_url)
    assert outcome.code == 2
    outcome.one_error_line("overview.json")
