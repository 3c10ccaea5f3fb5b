"""Reading issue records from CSV or JSONL text, as they are in the file and not yet checked (ingest.py
checks them).

Pure: lines in (the caller opens the file), one RawRow per record out, with its line, its raw text and,
when it could not be read, the problem.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from budgetq.errors import IngestError

REQUIRED_COLUMNS = ("priority", "text")
OPTIONAL_COLUMNS = ("external_id",)
FORMATS = ("csv", "jsonl")
# A CSV field longer than this is not read whole (the caller passes its text limit, plus one so the
# check's own "over the limit" reason applies to a text just over it).
DEFAULT_MAX_FIELD_CHARS = 100_001
MISSING = object()  # a column the record does not have
# tuple.__new__ builds a NamedTuple in C; the class's own __new__ is Python code, and on the load's
# fast path a million calls of it cost 0.3 s.
_new_tuple = tuple.__new__


# The two per-row types are NamedTuples, immutable like the frozen dataclasses elsewhere: building a
# million frozen dataclasses took 3.4 s here against 0.2 s for tuples, a third of the load budget.
class RawRow(NamedTuple):
    """One record as read from the file, not yet checked; ``problem`` is set when it could not be read."""

    line: int
    external_id: object = None
    priority: object = MISSING
    text: object = MISSING
    problem: str | None = None
    raw: str | None = None  # the record's lines as read, for --rejected-csv


def format_of(filename: str) -> str:
    """``csv`` or ``jsonl`` from a file name's suffix; IngestError names the accepted ones otherwise."""
    lowered = filename.lower()
    for suffix, fmt in ((".csv", "csv"), (".jsonl", "jsonl"), (".ndjson", "jsonl")):
        if lowered.endswith(suffix):
            return fmt
    raise IngestError(f"cannot tell the format of {filename!r}: name it *.csv, *.jsonl or *.ndjson")


def read_rows(
    lines: Iterable[str], fmt: str, *, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
) -> Iterator[RawRow]:
    """The records of CSV (header line first) or JSONL text, in file order."""
    if fmt == "csv":
        return read_csv(lines, max_field_chars=max_field_chars)
    if fmt == "jsonl":
        return read_jsonl(lines)
    raise IngestError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")


def read_csv(lines: Iterable[str], *, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> Iterator[RawRow]:
    """The records of CSV text whose first line names the columns; blank lines are skipped.

    A record with more or fewer fields than the header is a problem row (an unquoted comma would
    otherwise cut its text); a quote left open names the lines it swallowed; a field over
    ``max_field_chars`` is a problem row and is never held whole.
    """
    # The csv module's limit is process-wide: set to ours while reading, put back when done.
    previous = csv.field_size_limit(max_field_chars)
    try:
        yield from _read_csv(lines, max_field_chars)
    finally:
        csv.field_size_limit(previous)


def _read_csv(lines: Iterable[str], max_field_chars: int) -> Iterator[RawRow]:
    consumed: list[str] = []  # the lines of the record being read, for its raw text

    def feed() -> Iterator[str]:
        for text in lines:
            consumed.append(text)
            yield text

    reader = csv.reader(feed(), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise IngestError("the file is empty: expected a header line naming priority and text") from None
    except csv.Error as exc:
        raise IngestError(f"line 1: cannot read the CSV header: {exc}") from exc
    consumed.clear()
    names = [name.strip().lstrip("\ufeff").lower() for name in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise IngestError(
            f"the CSV header {header!r} lacks the column(s) {', '.join(missing)}; "
            "expected priority and text, and optionally external_id"
        )
    i_priority, i_text = names.index("priority"), names.index("text")
    i_external = names.index("external_id") if "external_id" in names else None
    width = len(names)
    last = reader.line_num
    while True:
        # A plain for loop is the fast path; a malformed record ends it, is reported, and reading resumes.
        try:
            for fields in reader:
                line, last = last + 1, reader.line_num
                raw = "".join(consumed)
                consumed.clear()
                if len(fields) == width:
                    external = fields[i_external] if i_external is not None else None
                    yield _new_tuple(RawRow, (line, external, fields[i_priority], fields[i_text], None, raw))
                elif fields:
                    external = (
                        fields[i_external] if i_external is not None and i_external < len(fields) else None
                    )
                    spans = f" (lines {line}-{last} read as one record)" if last > line else ""
                    hint = " (an unquoted comma?)" if len(fields) > width else ""
                    problem = f"has {len(fields)} fields but the header names {width}{hint}{spans}"
                    yield RawRow(line, external, problem=problem, raw=raw)
            return
        except csv.Error as exc:
            line, last = last + 1, reader.line_num
            raw = "".join(consumed)
            consumed.clear()
            # The record could not be read; its first line still names its external id for the report.
            try:
                first = next(csv.reader([raw.partition("\n")[0][:max_field_chars]]), [])
            except csv.Error:
                first = []
            external = first[i_external] if i_external is not None and i_external < len(first) else None
            problem = _malformed(str(exc), line, last, max_field_chars)
            yield RawRow(line, external, problem=problem, raw=raw)


def _malformed(error: str, first: int, last: int, max_field_chars: int) -> str:
    if "field larger than field limit" in error:
        return f"a field is over {max_field_chars:,} characters, longer than any text may be; not read"
    if last > first:
        return (
            f"malformed CSV: {error}; lines {first}-{last} were read as one record: "
            f"a quote opened on line {first} is never closed (those {last - first + 1} lines are not loaded)"
        )
    return f"malformed CSV: {error}"


def read_jsonl(lines: Iterable[str]) -> Iterator[RawRow]:
    """The records of JSON Lines text: one JSON object per line; blank lines are skipped."""
    for line, content in enumerate(lines, start=1):
        if not content or content.isspace():
            continue
        try:
            record = json.loads(content)
        except ValueError as exc:
            yield RawRow(line, problem=f"not valid JSON: {exc}", raw=content)
            continue
        if not isinstance(record, dict):
            yield RawRow(line, problem=f"expected a JSON object, got {type(record).__name__}", raw=content)
            continue
        yield RawRow(
            line,
            record.get("external_id"),
            record.get("priority", MISSING),
            record.get("text", MISSING),
            None,
            content,
        )
