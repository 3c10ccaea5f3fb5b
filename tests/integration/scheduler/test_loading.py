"""Loading issue files into PostgreSQL: good rows load, bad ones are reported, a load is all or nothing."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.engine import downgrade, make_engine, make_sessions, transaction, upgrade
from budgetq.adapters.store.models import Issue, IssueSet
from budgetq.cli.load import load_path

MAX_CHARS = 1_000


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _issues_of(sessions: sessionmaker[Session], set_name: str) -> list[tuple[str | None, int, str, int]]:
    with transaction(sessions) as session:
        rows = session.execute(
            select(Issue.external_id, Issue.priority, Issue.text, Issue.chars)
            .join(IssueSet, IssueSet.id == Issue.set_id)
            .where(IssueSet.name == set_name)
            .order_by(Issue.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def _set_exists(sessions: sessionmaker[Session], set_name: str) -> bool:
    with transaction(sessions) as session:
        return session.scalar(select(func.count()).where(IssueSet.name == set_name)) == 1


MIXED = (
    "external_id,priority,text\n"
    "a-1,15,orders.amount has 12 negative values\n"
    "a-2,7,priority seven is not allowed\n"
    'a-3,10,"customers.email, 4% null since the\nCRM sync"\n'
    "a-1,5,the same id again\n"
    'a-4,5,"   "\n'
    f"a-5,1,{'x' * (MAX_CHARS + 1)}\n"
    "a-6,1,fx_rates stale for 3 days\n"
)


def test_good_rows_load_and_every_bad_row_is_reported_with_its_reason(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Given a CSV with four bad rows among three good ones
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED, encoding="utf-8")
    name = _name("mixed")

    # When it is loaded
    report = load_path(sessions, path, name, max_text_chars=MAX_CHARS)

    # Then the three good rows are in the set, with their lengths
    assert report.committed and report.created and report.loaded == 3
    assert _issues_of(sessions, name) == [
        ("a-1", 15, "orders.amount has 12 negative values", 36),
        ("a-3", 10, "customers.email, 4% null since the\nCRM sync", 43),
        ("a-6", 1, "fx_rates stale for 3 days", 25),
    ]
    # And each bad row is reported on its line with its reason
    assert [(r.line, r.reason) for r in report.rejected] == [
        (3, "priority 7 is not allowed (allowed: 15, 10, 5, 1)"),
        (6, "duplicate external_id 'a-1' (first on line 2)"),
        (7, "text is empty or whitespace only"),
        (8, f"text is {MAX_CHARS + 1:,} characters, over the limit of {MAX_CHARS:,}"),
    ]


def test_strict_mode_leaves_the_database_unchanged(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    # Given a set holding one issue, and a file with good rows and bad ones
    name = _name("strict")
    first = tmp_path / "first.jsonl"
    first.write_text('{"external_id": "k", "priority": 10, "text": "already here"}\n', encoding="utf-8")
    assert load_path(sessions, first, name, max_text_chars=MAX_CHARS).loaded == 1
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED, encoding="utf-8")

    # When it is loaded strictly, into the existing set and into a new one
    into_existing = load_path(sessions, path, name, max_text_chars=MAX_CHARS, strict=True)
    new_name = _name("strict-new")
    into_new = load_path(sessions, path, new_name, max_text_chars=MAX_CHARS, strict=True)

    # Then nothing was written, and every bad row is still reported
    assert not into_existing.committed and into_existing.loaded == 0
    assert _issues_of(sessions, name) == [("k", 10, "already here", 12)]
    assert not into_new.committed and not _set_exists(sessions, new_name)
    assert [r.line for r in into_new.rejected] == [3, 6, 7, 8]


def test_appending_to_a_set_rejects_ids_it_already_holds(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Given a set loaded from JSONL and marked nightly
    name = _name("append")
    first = tmp_path / "first.jsonl"
    first.write_text('{"external_id": 1, "priority": 5, "text": "one"}\n', encoding="utf-8")
    load_path(sessions, first, name, max_text_chars=MAX_CHARS, nightly=True)

    # When a second file repeats id 1 and adds id 2
    second = tmp_path / "second.jsonl"
    second.write_text(
        '{"external_id": "1", "priority": 5, "text": "again"}\n'
        '{"external_id": "2", "priority": 15, "text": "two"}\n',
        encoding="utf-8",
    )
    report = load_path(sessions, second, name, max_text_chars=MAX_CHARS)

    # Then only id 2 is added, and the set is still nightly
    assert not report.created and report.loaded == 1
    assert [(r.line, r.reason) for r in report.rejected] == [(1, "external_id '1' is already in the set")]
    assert [row[0] for row in _issues_of(sessions, name)] == ["1", "2"]
    with transaction(sessions) as session:
        assert session.scalar(select(IssueSet.nightly).where(IssueSet.name == name)) is True


def test_a_file_with_no_loadable_row_creates_no_set(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("priority,text\n3,x\n", encoding="utf-8")
    name = _name("empty")
    report = load_path(sessions, path, name, max_text_chars=MAX_CHARS)
    assert not report.committed and len(report.rejected) == 1 and not _set_exists(sessions, name)


def _write_big(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "priority", "text"])
        filler = "warehouse table orders has duplicated order_id values after the nightly merge"
        writer.writerows((f"big-{i}", 10, filler) for i in range(rows))


def _copied_rows(sessions: sessionmaker[Session]) -> int:
    """Rows copied so far by the COPY running in this test database (the loader's)."""
    with transaction(sessions) as session:
        return int(
            session.scalar(
                text(
                    "SELECT coalesce(max(p.tuples_processed), 0) FROM pg_stat_progress_copy p "
                    "WHERE p.datname = current_database() AND p.command = 'COPY FROM'"
                )
            )
            or 0
        )


def test_a_load_killed_mid_copy_leaves_no_partial_set(
    sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    # Given a loader process busy copying a 300,000-row file
    path = tmp_path / "big.csv"
    _write_big(path, 300_000)
    name = _name("killed")
    env = {**os.environ, "BUDGETQ_DATABASE_URL": database_url, "BUDGETQ_DATA_DIR": str(tmp_path)}
    loader = subprocess.Popen(
        [sys.executable, "-c", "from budgetq.cli import main; main()", "load", str(path), "--set", name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _copied_rows(sessions) < 20_000:
            assert loader.poll() is None, "the loader ended before it could be killed mid-copy"
            assert time.monotonic() < deadline, "the loader never started copying"
            time.sleep(0.05)

        # When it is killed without warning
        loader.send_signal(signal.SIGKILL)
    finally:
        loader.kill()
        loader.wait()

    # Then neither the set nor any of its rows exists
    assert not _set_exists(sessions, name)
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).where(Issue.external_id == "big-0")) == 0


def test_issues_need_an_existing_set_and_leave_with_it(
    sessions: sessionmaker[Session], fresh_database: Callable[[], str]
) -> None:
    # Given the per-statement set check of migration 0004, down to 0003 and up again
    url = fresh_database()
    downgrade(url, "0003")
    upgrade(url)
    engine = make_engine(url, pool_size=1)
    local = make_sessions(engine)
    try:
        # When an issue names a set that does not exist, the statement fails as a foreign key would
        with pytest.raises(IntegrityError, match="issue set 999999 which does not exist"):
            with transaction(local) as session:
                session.execute(insert(Issue).values(set_id=999999, priority=10, text="x", chars=1))
        # And an issue cannot move to another set
        with transaction(local) as session:
            a = session.scalar(insert(IssueSet).values(name="a").returning(IssueSet.id))
            b = session.scalar(insert(IssueSet).values(name="b").returning(IssueSet.id))
            session.execute(insert(Issue).values(set_id=a, priority=10, text="x", chars=1))
        with pytest.raises(IntegrityError, match="cannot move"):
            with transaction(local) as session:
                session.execute(text("UPDATE issues SET set_id = :b"), {"b": b})
        # And deleting a set deletes its issues
        with transaction(local) as session:
            session.execute(delete(IssueSet).where(IssueSet.id == a))
        with transaction(local) as session:
            assert session.scalar(select(func.count()).select_from(Issue)) == 0
    finally:
        engine.dispose()
