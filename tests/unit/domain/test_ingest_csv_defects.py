"""CSV that used to lose data with exit 0 (issue 17, point 10): extra fields, an unclosed quote, the field
size limit, and what a rejection carries into --rejected-csv."""

from __future__ import annotations

import csv
import io

from budgetq.domain.ingest import check, read_csv

HEADER = "external_id,priority,text\n"


def _check(content: str, max_text_chars: int = 1000):  # type: ignore[no-untyped-def]
    return check(read_csv(io.StringIO(content)), max_text_chars=max_text_chars)


def test_a_row_with_more_fields_than_the_header_is_rejected_not_cut() -> None:
    # Given a row whose text holds an unquoted comma
    checked = _check(HEADER + "a,15,hello, world\nb,10,fine\n")

    # Then that row is rejected with its field count, its external id and its raw line; the next loads
    assert [r.external_id for r in checked.good] == ["b"]
    (rejection,) = checked.rejected
    assert rejection.line == 2 and "4 fields" in rejection.reason and "3" in rejection.reason
    assert rejection.external_id == "a"
    assert rejection.raw == "a,15,hello, world\n"


def test_an_unclosed_quote_reports_the_lines_it_swallowed() -> None:
    # Given a quote opened on line 3 and never closed: lines 3 to 6 read as one record
    checked = _check(HEADER + 'a,15,fine\nb,10,"unclosed\nc,5,lost\nd,1,lost too\ne,1,lost as well\n')

    # Then the rejection names the line range, so the rows swallowed are not silently one rejection
    assert [r.external_id for r in checked.good] == ["a"]
    (rejection,) = checked.rejected
    assert rejection.line == 3
    assert "lines 3-6" in rejection.reason and "quote" in rejection.reason
    assert (
        rejection.raw is not None and rejection.raw.startswith('b,10,"unclosed\n') and "e,1" in rejection.raw
    )


def test_a_field_over_the_text_limit_is_rejected_and_the_process_limit_is_left_alone() -> None:
    # Given the csv module's process-wide limit, and a field far over the text limit
    before = csv.field_size_limit()
    checked = _check(HEADER + "a,15," + "x" * 5000 + "\nb,10,fine\n", max_text_chars=100)

    # Then the row is rejected, the next loads, and the process-wide limit is what it was
    assert [r.external_id for r in checked.good] == ["b"]
    assert len(checked.rejected) == 1 and checked.rejected[0].line == 2
    assert csv.field_size_limit() == before


def test_reading_bounds_the_field_size_to_the_text_limit_while_it_reads() -> None:
    # Given a reader over a 1,000-character text limit
    rows = read_csv(io.StringIO(HEADER + "a,15," + "y" * 50_000 + "\n"), max_field_chars=1000)

    # Then a 50,000-character field is reported as too large, never held whole
    (row,) = list(rows)
    assert row.problem is not None and "1,000" in row.problem
