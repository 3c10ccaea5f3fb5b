"""The smaller CLI points of issue 17, point 11: each said the wrong thing or exited with the wrong code."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.conftest import Budgetq
from tests.integration.pipeline import make_seed_set

NO_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture
def budgetq(run_budgetq: Budgetq, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Budgetq:
    """`budgetq ARGS` with an empty data folder."""
    monkeypatch.setenv("BUDGETQ_DATA_DIR", str(tmp_path))
    return run_budgetq


def test_failed_only_with_nothing_failed_is_nothing_to_reprocess_exit_0(
    budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session]
) -> None:
    # Given a set whose issues never failed
    name = f"nofail-{uuid.uuid4().hex[:8]}"
    make_seed_set(sessions, name, 5)

    # When only its failed issues are reprocessed
    outcome = budgetq(
        "reprocess",
        name,
        "--failed-only",
        "--no-wait",
        BUDGETQ_DATABASE_URL=database_url,
        BUDGETQ_REDIS_URL=NO_BROKER,
    )

    # Then there is nothing to do, and that is a success
    assert outcome.code == 0, outcome
    assert "nothing to reprocess" in outcome.stderr + outcome.stdout


@pytest.mark.parametrize("ref", ["99999999999999999999", "٣", "²"])
def test_an_issue_reference_past_bigint_or_in_other_digits_is_not_found_in_one_line(
    budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session], ref: str
) -> None:
    # Given a set (its issues have small internal ids)
    name = f"refs-{uuid.uuid4().hex[:8]}"
    make_seed_set(sessions, name, 3)

    # When an issue is named by a number no bigint holds, or by digits that are not 0-9
    outcome = budgetq(
        "reprocess", name, "--issues", ref, "--no-wait", BUDGETQ_DATABASE_URL=database_url,
        BUDGETQ_REDIS_URL=NO_BROKER,
    )  # fmt: skip

    # Then it is one line naming it as not in the set (not a DataError traceback, not issue 3)
    outcome.one_error_line(ref, "not in set")
    assert outcome.code == 2


def test_a_header_only_file_loads_nothing_and_says_so_with_exit_0(
    budgetq: Budgetq, database_url: str, tmp_path: Path
) -> None:
    # Given a CSV with its header and no row
    source = tmp_path / "empty.csv"
    source.write_text("external_id,priority,text\n")

    # When it is loaded
    outcome = budgetq(
        "load", str(source), "--set", f"e-{uuid.uuid4().hex[:8]}", BUDGETQ_DATABASE_URL=database_url
    )

    # Then nothing was rejected, so it is not a failure: exit 0 and a line saying there were no rows
    assert outcome.code == 0, outcome
    assert "no rows" in outcome.stderr + outcome.stdout


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_set_name_is_one_error_line(
    budgetq: Budgetq, database_url: str, tmp_path: Path, name: str
) -> None:
    # Given a file to load
    source = tmp_path / "issues.csv"
    source.write_text("external_id,priority,text\na,15,x\n")

    # When the set is named by nothing
    outcome = budgetq("load", str(source), "--set", name, BUDGETQ_DATABASE_URL=database_url)

    # Then it is refused in one line, exit 2
    outcome.one_error_line("--set")
    assert outcome.code == 2


def test_db_upgrade_to_base_does_not_claim_to_be_at_base(budgetq: Budgetq, database_url: str) -> None:
    # Given a database at head
    # When it is "upgraded" to base (an upgrade never goes down)
    outcome = budgetq("db", "upgrade", "base", BUDGETQ_DATABASE_URL=database_url)

    # Then one line says an upgrade cannot go down, and names the revision it is at
    line = outcome.one_error_line("base")
    assert outcome.code == 2 and "database at base" not in outcome.stdout
    assert "downgrade" in line or "cannot go down" in line


@pytest.mark.parametrize("revision", ["0003", "0010", " 0001 "])
def test_db_upgrade_to_a_revision_below_the_database_is_refused_as_a_downgrade(
    budgetq: Budgetq, database_url: str, revision: str
) -> None:
    # Given a database at head
    # When it is "upgraded" to an older revision (alembic would do nothing and we said "database at 0003")
    outcome = budgetq("db", "upgrade", revision, BUDGETQ_DATABASE_URL=database_url)

    # Then one line says it would be a downgrade and names where the database is; it is still at head
    outcome.one_error_line(revision.strip(), "downgrade", "(head)")
    assert outcome.code == 2 and "database at" not in outcome.stdout
    again = budgetq("db", "upgrade", BUDGETQ_DATABASE_URL=database_url)
    assert again.code == 0 and "(head)" in again.stderr, again


@pytest.mark.parametrize("args", [("--no-wait",), ("--workers", "0")])
def test_no_wait_or_no_workers_with_the_embedded_broker_is_refused(
    budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session], args: tuple[str, ...]
) -> None:
    # Given a set and no BUDGETQ_REDIS_URL: only this process could reach its embedded broker
    name = f"emb-{uuid.uuid4().hex[:8]}"
    make_seed_set(sessions, name, 3)

    # When the run is asked not to wait, or to start no worker
    outcome = budgetq("run", name, *args, BUDGETQ_DATABASE_URL=database_url)

    # Then it is refused in one line naming the broker setting, before anything is planned
    outcome.one_error_line("BUDGETQ_REDIS_URL")
    assert outcome.code == 2


def test_plan_applies_the_run_spend_cap_setting_as_run_does(
    budgetq: Budgetq, database_url: str, sessions: sessionmaker[Session]
) -> None:
    # Given a set and a run cap in the environment far below what it costs
    name = f"cap-{uuid.uuid4().hex[:8]}"
    make_seed_set(sessions, name, 200)

    # When it is planned
    outcome = budgetq(
        "plan", name, "--json", BUDGETQ_DATABASE_URL=database_url, BUDGETQ_RUN_SPEND_CAP_USD="0.01"
    )

    # Then the plan defers what the run would defer
    assert outcome.code == 0, outcome
    assert json.loads(outcome.stdout)["deferred"] > 0


def test_rejected_csv_is_written_with_json_output_too(
    budgetq: Budgetq, database_url: str, tmp_path: Path
) -> None:
    # Given a file with one bad row, loaded with --json and --rejected-csv
    source = tmp_path / "issues.csv"
    source.write_text("external_id,priority,text\na,15,good\nb,7,bad priority\n")
    target = tmp_path / "rejected.csv"
    outcome = budgetq(
        "load", str(source), "--set", f"j-{uuid.uuid4().hex[:8]}", "--json", "--rejected-csv", str(target),
        BUDGETQ_DATABASE_URL=database_url,
    )  # fmt: skip

    # Then the counts are printed and the rejected row is in the file (it was silently not written)
    assert outcome.code == 1 and json.loads(outcome.stdout)["rejected"] == 1, outcome
    assert target.read_text().splitlines()[1].startswith("3,b,")


ROWS = "external_id,priority,text\na,15,x\n"
DBT_RESULTS = '{"results": [], "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"}}'


@pytest.mark.parametrize(
    ("content", "name", "args", "option"),
    [
        (ROWS, "i.csv", ("--manifest", "manifest.json"), "--manifest"),
        (ROWS, "i.csv", ("--priority-map", "p.toml"), "--priority-map"),
        (ROWS, "i.csv", ("--snapshot", "--rejected-csv", "r.csv"), "--rejected-csv"),
        (DBT_RESULTS, "run_results.json", ("--rejected-csv", "r.csv"), "--rejected-csv"),
    ],
)
def test_a_load_option_that_does_not_apply_to_the_file_is_refused(
    budgetq: Budgetq, tmp_path: Path, content: str, name: str, args: tuple[str, ...], option: str
) -> None:
    # Given a file and an option its kind of load would silently ignore
    source = tmp_path / name
    source.write_text(content)
    outcome = budgetq(
        "load", str(source), "--set", "x", *(str(tmp_path / a) if "." in a else a for a in args),
        BUDGETQ_DATABASE_URL="postgresql://budgetq:pw@127.0.0.1:1/budgetq", BUDGETQ_REDIS_URL=NO_BROKER,
    )  # fmt: skip

    # Then one line names the option and what it applies to, before any server is asked
    outcome.one_error_line(option, "applies")
    assert outcome.code == 2 and "PostgreSQL" not in outcome.stderr
