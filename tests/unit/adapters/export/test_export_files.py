"""Export writers: CSV, JSON Lines and Parquet keep non-ASCII, exact decimals; files are whole or absent."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from budgetq.adapters.export.files import whole_file, write_csv, write_jsonl, write_parquet
from budgetq.cli.results import parse_since
from budgetq.domain.selector import parse_refs
from budgetq.domain.statuses import BatchStatus
from budgetq.errors import ExportError, SelectorError

COLUMNS = ("issue_id", "external_id", "answered_at", "cost_usd", "confidence")
WHEN = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
ROWS = [
    {
        "issue_id": 1,
        "external_id": "prüf-数据",
        "answered_at": WHEN,
        "cost_usd": Decimal("0.000123"),
        "confidence": 0.5,
    },
    {"issue_id": 2, "external_id": None, "answered_at": None, "cost_usd": Decimal("0"), "confidence": None},
]


def test_jsonl_keeps_non_ascii_and_exact_decimals(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    with path.open("w", encoding="utf-8") as out:
        assert write_jsonl(iter(ROWS), COLUMNS, out) == 2
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert "prüf-数据" in first and json.loads(first)["cost_usd"] == "0.000123"
    assert json.loads(first)["answered_at"] == "2026-12-03T10:00:00+00:00"


def test_csv_writes_a_header_and_empty_cells_for_nulls(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        assert write_csv(iter(ROWS), COLUMNS, out) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [",".join(COLUMNS), "1,prüf-数据,2026-12-03T10:00:00+00:00,0.000123,0.5", "2,,,0,"]


def test_parquet_reads_back_the_same_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    assert write_parquet(iter(ROWS), COLUMNS, path) == 2
    assert pq.read_table(path).to_pylist() == ROWS


def test_a_failed_write_leaves_no_file_and_an_existing_one_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("the previous export\n", encoding="utf-8")
    with pytest.raises(RuntimeError), whole_file(target) as part:
        part.write_text("half", encoding="utf-8")
        raise RuntimeError("interrupted")
    assert target.read_text(encoding="utf-8") == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    with pytest.raises(ExportError, match="cannot write .*No such file or directory"):
        with whole_file(tmp_path / "missing" / "out.csv"):
            pass


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", WHEN - dt.timedelta(days=30)),
        ("12h", WHEN - dt.timedelta(hours=12)),
        ("2026-12-01", dt.datetime(2026, 12, 1, tzinfo=dt.UTC)),
        ("2026-12-01T08:00:00+01:00", dt.datetime(2026, 12, 1, 7, tzinfo=dt.UTC)),
    ],
)
def test_since_takes_an_age_or_a_date(text: str, expected: dt.datetime) -> None:
    assert parse_since(text, WHEN) == expected


def test_since_refuses_anything_else() -> None:
    with pytest.raises(ExportError, match="--since 'last week' is neither"):
        parse_since("last week", WHEN)


def test_issue_references_keep_order_and_drop_duplicates() -> None:
    assert parse_refs(" DQ-7, 12,DQ-7 ,,数据") == ("DQ-7", "12", "数据")
    with pytest.raises(SelectorError, match="at least one issue id"):
        parse_refs(" , ")


def test_a_cancelled_batch_is_terminal() -> None:
    assert BatchStatus.CANCELLED.terminal
