"""`budgetq results`, `sets`, `runs` and `reprocess --issues EXTERNAL-IDS` on a set run twice by a worker."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import transaction
from budgetq.adapters.store.issues import NewIssue, create_set, insert_issues
from tests.integration.conftest import Budgetq
from tests.integration.pipeline import wait_for_run

TEXTS = [f"Tabelle kunden_{i}: {i} Zeilen mit leerem Schlüssel, «ÿ» — 数据 {i}" for i in range(40)]


@pytest.fixture
def budgetq(
    run_budgetq: Budgetq, monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str], tmp_path: Path
) -> Budgetq:
    """`budgetq ARGS` on the test servers and the test's stand-in; batches go to the test's worker."""
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BUDGETQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUDGETQ_MAX_ISSUES_PER_CALL", "10")
    return run_budgetq


@pytest.fixture
def answered_twice(
    budgetq: Budgetq, sessions: sessionmaker[Session], start_worker: Callable[..., Any]
) -> tuple[str, list[int]]:
    """A set of 40 non-ASCII issues (external ids prüf-0-数据…) run twice to the end; its name and run ids."""
    name = f"res-{uuid.uuid4().hex[:8]}"
    with transaction(sessions) as session:
        set_id = create_set(session, name)
        insert_issues(
            session,
            set_id,
            (NewIssue((15, 10, 5, 1)[i % 4], t, f"prüf-{i}-数据") for i, t in enumerate(TEXTS)),
        )
    start_worker(concurrency=4)
    run_ids = []
    for _ in range(2):
        started = budgetq("run", name, "--no-wait", "--workers", "0")
        assert started.code == 0, started
        with transaction(sessions) as session:
            run_ids.append(session.scalar(text("SELECT max(id) FROM runs WHERE set_id = :s"), {"s": set_id}))
        assert wait_for_run(sessions, run_ids[-1]).status == "succeeded"
    return name, run_ids


def test_results_give_the_latest_answer_per_issue_in_every_format(
    budgetq: Budgetq, answered_twice: tuple[str, list[int]], tmp_path: Path
) -> None:
    name, (first, second) = answered_twice

    # jsonl: one line per issue (not per run), the latest run's answer, non-ASCII kept as is
    jsonl = budgetq("results", name, "--format", "jsonl")
    assert jsonl.code == 0, jsonl
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(rows) == 40 and {r["run_id"] for r in rows} == {second}
    assert sorted(r["external_id"] for r in rows) == sorted(f"prüf-{i}-数据" for i in range(40))
    assert all(r["status"] == "answered" and r["diagnosis"] and r["category"] for r in rows)
    assert all(float(r["cost_usd"]) > 0 for r in rows) and "prüf-1-数据" in jsonl.stdout
    assert [r["priority"] for r in rows] == sorted((r["priority"] for r in rows), reverse=True)
    assert {r["owner"] for r in rows} == {None}  # not loaded yet: exported as null

    # parquet: the same rows, read back by pyarrow
    target = tmp_path / "out.parquet"
    written = budgetq("results", name, "--format", "parquet", "-o", str(target))
    assert written.code == 0 and "40 rows" in written.stderr, written
    table = pq.read_table(target).to_pylist()
    assert [(r["issue_id"], r["diagnosis"], str(r["cost_usd"])) for r in table] == [
        (r["issue_id"], r["diagnosis"], r["cost_usd"]) for r in rows
    ]
    assert list(tmp_path.glob(".out.parquet.*")) == []  # no temporary file left behind

    # csv to a file, with a filter; --run gives one run's rows
    out_csv = tmp_path / "p15.csv"
    assert budgetq("results", name, "--priority", "15", "--format", "csv", "-o", str(out_csv)).code == 0
    parsed = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert len(parsed) == 10 and {p["priority"] for p in parsed} == {"15"}
    assert all(p["external_id"].startswith("prüf-") and p["external_id"].endswith("-数据") for p in parsed)
    by_run = budgetq("results", "--run", str(first), "--format", "jsonl", "--status", "answered")
    assert {json.loads(line)["run_id"] for line in by_run.stdout.splitlines()} == {first}
    assert budgetq("results", name).code == 0  # the table


def test_sets_and_runs_list_what_there_is(budgetq: Budgetq, answered_twice: tuple[str, list[int]]) -> None:
    name, (first, second) = answered_twice
    sets = [json.loads(line) for line in budgetq("sets", "--json").stdout.splitlines()]
    mine = next(s for s in sets if s["name"] == name)
    assert (mine["issues"], mine["runs"], mine["last_run_id"], mine["last_run_status"]) == (
        40,
        2,
        second,
        "succeeded",
    )
    runs = [json.loads(line) for line in budgetq("runs", "--set", name, "--json").stdout.splitlines()]
    assert [(r["id"], r["answered"], r["issues"]) for r in runs] == [(second, 40, 40), (first, 40, 40)]
    assert budgetq("runs", "--set", name, "--status", "failed", "--json").stdout == ""


def test_reprocess_takes_external_ids_as_well_as_internal_ones(
    budgetq: Budgetq, answered_twice: tuple[str, list[int]], sessions: sessionmaker[Session]
) -> None:
    name, _ = answered_twice
    with transaction(sessions) as session:
        internal = session.scalar(
            text(
                "SELECT i.id FROM issues i JOIN issue_sets s ON s.id = i.set_id "
                "WHERE s.name = :n AND external_id = 'prüf-7-数据'"
            ),
            {"n": name},
        )
    again = budgetq(
        "reprocess", name, "--issues", f"prüf-3-数据, prüf-5-数据,{internal}", "--no-wait", "--workers", "0"
    )
    assert again.code == 0, again
    assert "3 issues in" in again.stdout
    with transaction(sessions) as session:
        selector = session.scalar(text("SELECT selector FROM runs ORDER BY id DESC LIMIT 1"))
        picked = session.scalars(
            text("SELECT external_id FROM issues WHERE id = ANY(:ids) ORDER BY external_id"),
            {"ids": selector["issue_ids"]},
        ).all()
    assert picked == ["prüf-3-数据", "prüf-5-数据", "prüf-7-数据"]
    unknown = budgetq(
        "reprocess", name, "--issues", "prüf-3-数据,nope,99999999", "--no-wait", "--workers", "0"
    )
    unknown.one_error_line("2 of the listed issues are not in set", "nope, 99999999")
    assert unknown.code == 2


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("results", "no-such-set"), 2, ("no issue set named 'no-such-set'",)),
        (("results", "--run", "987654321"), 2, ("no run 987654321",)),
        (("results",), 2, ("give an issue set or --run N",)),
        (("results", "--run", "1", "--owner", "no-such-owner"), 1, ("no results for run 1 match",)),
        (("results", "--run", "1", "--status", "nope"), 2, ("--status 'nope' is not an issue status",)),
        (("cancel", "987654321"), 2, ("no run 987654321",)),
        (("runs", "--set", "no-such-set"), 2, ("no issue set named 'no-such-set'",)),
    ],
)
def test_bad_input_is_one_clear_line(
    budgetq: Budgetq, args: tuple[str, ...], code: int, words: tuple[str, ...]
) -> None:
    outcome = budgetq(*args)
    outcome.one_error_line(*words)
    assert outcome.code == code


def test_empty_results_and_unwritable_paths_are_one_clear_line(
    budgetq: Budgetq, answered_twice: tuple[str, list[int]], tmp_path: Path
) -> None:
    name, (first, _) = answered_twice
    empty = budgetq("results", name, "--status", "failed")
    empty.one_error_line("no results for set", "match the filters given")
    assert empty.code == 1
    for target in ("/proc/no/such/dir/out.csv", str(tmp_path)):
        unwritable = budgetq("results", name, "--format", "csv", "-o", target)
        unwritable.one_error_line("cannot write", "-o")
        assert unwritable.code == 2
    parquet = budgetq("results", name, "--format", "parquet")
    parquet.one_error_line("--format parquet needs -o FILE")
    assert budgetq("cancel", str(first)).one_error_line("already ended (succeeded)")
