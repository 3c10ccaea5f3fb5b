"""`budgetq load` of dbt, Great Expectations, Soda and Elementary results into PostgreSQL, and snapshots."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store import issues as issue_store
from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.models import Issue, IssueSet, Run, RunIssue
from budgetq.adapters.store.selection import count_selected
from budgetq.domain.selector import Selector, SelectorKind
from tests.integration.conftest import Budgetq

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "loaders"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _load(budgetq: Budgetq, url: str, *args: str) -> tuple[int, dict[str, object]]:
    outcome = budgetq("load", *args, "--json", BUDGETQ_DATABASE_URL=url)
    assert "Traceback" not in outcome.stderr, outcome
    return outcome.code, json.loads(outcome.stdout) if outcome.stdout.strip() else {}


def _target(tmp_path: Path) -> Path:
    target = tmp_path / "project" / "target"
    shutil.copytree(FIXTURES / "dbt_target", target)
    return target


def _results(target: Path, change: dict[str, tuple[str, int | None]]) -> None:
    path = target / "run_results.json"
    document = json.loads(path.read_text())
    for result in document["results"]:
        for prefix, (status, failures) in change.items():
            if result["unique_id"].startswith(prefix):
                result["status"], result["failures"] = status, failures
                result["message"] = f"Got {failures} results"
    path.write_text(json.dumps(document))


def test_a_dbt_target_folder_loads_its_failures_with_their_attributes(
    run_budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    set_name = _name("dbt")
    code, data = _load(run_budgetq, database_url, str(_target(tmp_path).parent), "--set", set_name)
    assert code == 0
    assert {k: data[k] for k in ("source", "read", "loaded", "rejected", "skipped_passing")} == {
        "source": "dbt",
        "read": 4,
        "loaded": 3,
        "rejected": 0,
        "skipped_passing": 1,
    }
    with transaction(sessions) as session:
        rows = session.execute(
            select(Issue.source, Issue.dataset, Issue.column_name, Issue.owner, Issue.tags, Issue.priority)
            .join(IssueSet, IssueSet.id == Issue.set_id)
            .where(IssueSet.name == set_name)
            .order_by(Issue.id)
        ).all()
    assert [tuple(r) for r in rows][0] == (
        "dbt",
        "analytics.shop.orders",
        "customer_id",
        "team-orders",
        ["finance"],
        10,
    )
    # Loading the same checks again without --snapshot is refused, check by check (exit 1).
    code, data = _load(run_budgetq, database_url, str(_target(tmp_path / "again")), "--set", set_name)
    assert (code, data["loaded"], data["rejected"]) == (1, 0, 3)


def test_snapshots_insert_change_keep_and_resolve_and_a_changed_issue_is_due_again(
    run_budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    target = _target(tmp_path)
    set_name = _name("nightly")
    args = (str(target), "--set", set_name, "--snapshot")
    code, first = _load(run_budgetq, database_url, *args)
    assert (code, first["inserted"], first["resolved"]) == (0, 3, 0)

    # A second load of the same results changes nothing.
    code, second = _load(run_budgetq, database_url, *args)
    assert (second["inserted"], second["changed"], second["unchanged"], second["resolved"]) == (0, 0, 3, 0)

    # Given a run that answered every issue of the set
    with transaction(sessions) as session:
        set_id = issue_store.set_id_by_name(session, set_name)
        run = Run(
            set_id=set_id,
            kind="ondemand",
            status="succeeded",
            mode="standin",
            model="m",
            max_tokens=1,
            safe_utilization=0.75,
            context_window=1000,
            calibration=1.0,
        )
        session.add(run)
        session.flush()
        for issue_id, priority in session.execute(
            select(Issue.id, Issue.priority).where(Issue.set_id == set_id)
        ):
            session.add(
                RunIssue(
                    run_id=run.id, issue_id=issue_id, priority=priority, input_tokens_est=1, status="answered"
                )
            )
    with transaction(sessions) as session:
        assert count_selected(session, set_id, Selector(SelectorKind.UNANSWERED)) == 0

    # When one check is fixed, one fails anew and one's count changes
    _results(
        target,
        {
            "test.shop.not_null_orders_customer_id": ("pass", 0),
            "test.shop.accepted_values_orders_status": ("fail", 7),
            "test.shop.unique_orders_order_id": ("warn", 9),
        },
    )
    code, third = _load(run_budgetq, database_url, *args)
    assert (third["inserted"], third["changed"], third["unchanged"], third["resolved"]) == (1, 1, 1, 1)

    # Then the fixed one is resolved and left out of runs, and the changed and new ones are due
    with transaction(sessions) as session:
        states = {
            external: state
            for external, state in session.execute(
                select(Issue.external_id, Issue.state).where(Issue.set_id == set_id)
            )
        }
        planned = issue_store.planning_rows(session, set_id)
        due = count_selected(session, set_id, Selector(SelectorKind.UNANSWERED))
    assert states["test.shop.not_null_orders_customer_id.abc123"] == "resolved"
    assert len(planned) == 3 and due == 2

    # And a fourth identical load changes nothing again
    code, fourth = _load(run_budgetq, database_url, *args)
    assert (fourth["inserted"], fourth["changed"], fourth["unchanged"], fourth["resolved"]) == (0, 0, 3, 0)


def test_gx_soda_and_elementary_files_load(run_budgetq: Budgetq, database_url: str) -> None:
    for name, failing in (
        ("gx_checkpoint_result.json", 2),
        ("soda_scan_results.json", 2),
        ("soda_contract_results.json", 1),
        ("elementary_test_results.csv", 1),
    ):
        code, data = _load(run_budgetq, database_url, str(FIXTURES / name), "--set", _name("tools"))
        assert (code, data["loaded"]) == (0, failing), (name, data)


def test_bad_tool_files_get_one_clear_line_and_load_nothing(
    run_budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    truncated = tmp_path / "run_results.json"
    truncated.write_bytes((FIXTURES / "dbt_target" / "run_results.json").read_bytes()[:300])
    other_version = tmp_path / "v9" / "run_results.json"
    other_version.parent.mkdir()
    document = json.loads((FIXTURES / "dbt_target" / "run_results.json").read_text())
    document["metadata"]["dbt_schema_version"] = "https://schemas.getdbt.com/dbt/run-results/v9.json"
    other_version.write_text(json.dumps(document))
    set_name = _name("bad")
    bad_map = tmp_path / "priorities.toml"
    bad_map.write_text("[status]\nfail = 7\n")
    cases = (
        ((str(FIXTURES / "dbt_target"), "--priority-map", str(bad_map)), "fail = 7 is not a priority"),
        ((str(truncated),), "not valid JSON"),
        ((str(FIXTURES / "dbt_target"), "--from", "soda"), "is a dbt file, not soda"),
        ((str(other_version),), "supported: run-results v1, v2, v3, v4, v5, v6"),
        ((str(FIXTURES / "dbt_target" / "manifest.json"),), "load the run_results.json"),
        ((str(tmp_path / "missing.json"),), "no such file"),
    )
    for args, words in cases:
        outcome = run_budgetq("load", *args, "--set", set_name, BUDGETQ_DATABASE_URL=database_url)
        assert outcome.code == 2
        outcome.one_error_line(words)
    with transaction(sessions) as session:
        assert session.scalar(select(IssueSet.id).where(IssueSet.name == set_name)) is None


def test_a_file_with_no_failing_check_is_nothing_to_load(
    run_budgetq: Budgetq, database_url: str, tmp_path: Path
) -> None:
    target = _target(tmp_path)
    _results(target, {"test.shop.": ("pass", 0)})
    outcome = run_budgetq("load", str(target), "--set", _name("clean"), BUDGETQ_DATABASE_URL=database_url)
    assert outcome.code == 0 and "nothing to load" in outcome.stdout


def test_a_snapshot_with_nothing_failing_resolves_every_open_check(
    run_budgetq: Budgetq, database_url: str, tmp_path: Path
) -> None:
    target = _target(tmp_path)
    set_name = _name("all-fixed")
    _load(run_budgetq, database_url, str(target), "--set", set_name, "--snapshot")
    _results(target, {"test.shop.": ("pass", 0)})
    code, data = _load(run_budgetq, database_url, str(target), "--set", set_name, "--snapshot")
    assert (code, data["loaded"], data["resolved"], data["skipped_passing"]) == (0, 0, 3, 4)


def test_cost_reports_by_owner_tag_dataset_and_source_run_on_a_loaded_set(
    run_budgetq: Budgetq, database_url: str, tmp_path: Path
) -> None:
    _load(run_budgetq, database_url, str(_target(tmp_path)), "--set", _name("costs"))
    for by in ("owner", "tag", "dataset", "source"):
        outcome = run_budgetq(
            "report", "cost", "--by", by, "--format", "json", BUDGETQ_DATABASE_URL=database_url
        )
        assert outcome.code == 0, outcome
        assert isinstance(json.loads(outcome.stdout), dict | list)


def test_a_csv_snapshot_needs_every_row_good_and_resolves_the_rows_left_out(
    run_budgetq: Budgetq, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "issues.csv"
    set_name = _name("csv-snap")
    path.write_text("external_id,priority,text\na,10,first\nb,5,second\n")
    code, first = _load(run_budgetq, database_url, str(path), "--set", set_name, "--snapshot")
    assert (code, first["inserted"]) == (0, 2)
    path.write_text("external_id,priority,text\na,10,first changed\nc,5,third\n")
    code, second = _load(run_budgetq, database_url, str(path), "--set", set_name, "--snapshot")
    assert (second["inserted"], second["changed"], second["resolved"]) == (1, 1, 1)
    # A bad row, or one without an id, loads nothing: leaving it out would resolve its issue.
    path.write_text("external_id,priority,text\na,10,first changed\n,5,no id\n")
    outcome = run_budgetq(
        "load", str(path), "--set", set_name, "--snapshot", BUDGETQ_DATABASE_URL=database_url
    )
    assert outcome.code == 2
    outcome.one_error_line("nothing was loaded")
