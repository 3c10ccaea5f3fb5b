"""Reading and checking issue rows: every bad row is named with its line and reasons, good rows pass."""

from __future__ import annotations

import io

import pytest

from budgetq.domain import ingest
from budgetq.domain.ingest import IssueRow, Rejection
from budgetq.errors import IngestError


def _csv(text: str, max_text_chars: int = 100, existing: frozenset[str] = frozenset()) -> ingest.Checked:
    return ingest.check(
        ingest.read_csv(io.StringIO(text, newline="")), max_text_chars=max_text_chars, existing_ids=existing
    )


def _jsonl(text: str, max_text_chars: int = 100) -> ingest.Checked:
    return ingest.check(ingest.read_jsonl(io.StringIO(text)), max_text_chars=max_text_chars)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ('A,15,""', "text is empty or whitespace only"),
        ('A,15,"   \t "', "text is empty or whitespace only"),
        ('A,15,"a\x00b"', "text contains a NUL byte"),
        ("A,15," + "x" * 101, "text is 101 characters, over the limit of 100"),
        ("A,7,text", "priority 7 is not allowed (allowed: 15, 10, 5, 1)"),
        ("A,high,text", "priority 'high' is not an integer (allowed: 15, 10, 5, 1)"),
        ("A,10.0,text", "priority '10.0' is not an integer (allowed: 15, 10, 5, 1)"),
        ("A,,text", "priority is missing"),
        ("A,15", "has 2 fields but the header names 3"),
        ("A,15,bad \udcff byte", "text is not valid UTF-8"),
    ],
)
def test_a_bad_csv_row_is_rejected_with_its_line_and_reason(row: str, reason: str) -> None:
    # Given a file whose second data row is bad
    text = f"external_id,priority,text\nOK,10,fine\n{row}\n"

    # When it is checked
    checked = _csv(text)

    # Then the good row passes and the bad one is rejected on line 3 with the reason
    assert checked.good == (IssueRow(2, "OK", 10, "fine"),)
    assert checked.rejected == (Rejection(3, reason),)


def test_every_reason_of_a_row_is_given_at_once() -> None:
    # Given a row with a bad priority and an empty text
    checked = _csv("priority,text\n3,\n")

    # Then both reasons are named
    assert checked.rejected == (
        Rejection(2, "priority 3 is not allowed (allowed: 15, 10, 5, 1); text is empty or whitespace only"),
    )


def test_a_repeated_external_id_is_rejected_after_its_first_line_even_when_that_line_was_bad() -> None:
    # Given three rows with the same external id, the first of them bad
    checked = _csv("external_id,priority,text\nX,4,bad priority\nX,10,second\nX,5,third\n")

    # Then the first is rejected for its priority and the later two as duplicates of line 2
    assert [r.line for r in checked.rejected] == [2, 3, 4]
    assert checked.rejected[1].reason == "duplicate external_id 'X' (first on line 2)"
    assert checked.good == ()


def test_an_external_id_already_in_the_set_is_rejected() -> None:
    # Given a set that holds external id OLD
    checked = _csv("external_id,priority,text\nOLD,10,again\nNEW,10,new\n", existing=frozenset({"OLD"}))

    # Then only the new row loads
    assert checked.rejected == (Rejection(2, "external_id 'OLD' is already in the set"),)
    assert [g.external_id for g in checked.good] == ["NEW"]


def test_line_numbers_follow_the_file_across_blank_lines_and_multiline_texts() -> None:
    # Given a quoted text spanning two lines, then a blank line, then a bad row
    text = 'priority,text\n10,"first\nsecond"\n\n8,x\n'

    # When it is checked
    checked = _csv(text)

    # Then the multiline text is kept whole and the bad row is reported on its own line (5)
    assert checked.good == (IssueRow(2, None, 10, "first\nsecond"),)
    assert checked.rejected == (Rejection(5, "priority 8 is not allowed (allowed: 15, 10, 5, 1)"),)


def test_columns_may_come_in_any_order_with_extra_ones_ignored() -> None:
    checked = _csv("\ufeffText,source,Priority\nhello,crm,5\n")
    assert checked.good == (IssueRow(2, None, 5, "hello"),)


@pytest.mark.parametrize(
    ("header", "missing"), [("external_id,text", "priority"), ("id,priority,body", "text"), ("", "priority")]
)
def test_a_csv_without_the_needed_columns_is_refused_whole(header: str, missing: str) -> None:
    with pytest.raises(IngestError, match=missing):
        _csv(f"{header}\n1,2,3\n")


def test_an_empty_file_is_refused_whole() -> None:
    with pytest.raises(IngestError, match="empty"):
        _csv("")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"priority": true, "text": "x"}', "priority True is not an integer"),
        ('{"priority": 1.0, "text": "x"}', "priority 1.0 is not an integer"),
        ('{"priority": 10}', "text is missing"),
        ('{"priority": 10, "text": 5}', "text must be a string, got int"),
        ('{"priority": 10, "text": "\\ud800"}', "text is not valid UTF-8"),
        ('{"priority": 10, "text": "x", "external_id": [1]}', "external_id must be a string or an integer"),
    ],
)
def test_a_bad_jsonl_line_is_rejected_with_its_reason(line: str, reason: str) -> None:
    # Given a good line, then a bad one
    checked = _jsonl('{"external_id": 7, "priority": "15", "text": "ok"}\n' + line + "\n")

    # Then the good line loads (an integer id becomes text) and the bad one names its reason
    assert checked.good == (IssueRow(1, "7", 15, "ok"),)
    assert len(checked.rejected) == 1 and checked.rejected[0].line == 2
    assert reason in checked.rejected[0].reason


def test_the_fast_path_and_the_full_check_agree_on_good_rows() -> None:
    # Given rows the fast path takes (CSV text, JSON ints, padded and non-ASCII ids)
    rows = [
        ingest.RawRow(1, " A1 ", "15", "ok"),
        ingest.RawRow(2, None, 10, "héllo"),
        ingest.RawRow(3, "", "5", "x"),
        ingest.RawRow(4, "ü", "1", "y"),
    ]

    # When they are checked
    checked = ingest.check(rows, max_text_chars=10)

    # Then all pass, ids stripped, empty ids as None
    assert checked.good == (
        IssueRow(1, "A1", 15, "ok"),
        IssueRow(2, None, 10, "héllo"),
        IssueRow(3, None, 5, "x"),
        IssueRow(4, "ü", 1, "y"),
    )


@pytest.mark.parametrize(("name", "fmt"), [("a.csv", "csv"), ("b.JSONL", "jsonl"), ("c.ndjson", "jsonl")])
def test_the_format_comes_from_the_suffix(name: str, fmt: str) -> None:
    assert ingest.format_of(name) == fmt


def test_an_unknown_suffix_is_refused() -> None:
    with pytest.raises(IngestError, match=r"\*\.csv"):
        ingest.format_of("issues.xlsx")
