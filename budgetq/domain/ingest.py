"""Reading issue rows from CSV or JSONL text, and deciding row by row which can be loaded and why not.

Pure: lines in (the caller opens the file), good rows and one reason per rejected line out.
The columns (CSV header names, or JSON object keys) are ``priority`` and ``text``, and optionally
``external_id``; other columns are ignored. A row is rejected, with its line number and the
reasons, when its text is missing, empty or whitespace only, holds a NUL byte (PostgreSQL text
cannot), is not valid UTF-8, or is over the size limit; when its priority is not an integer in
{15, 10, 5, 1}; or when its external id repeats one earlier in the file or already in the set.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from budgetq.errors import IngestError

ALLOWED_PRIORITIES = (15, 10, 5, 1)
REQUIRED_COLUMNS = ("priority", "text")
OPTIONAL_COLUMNS = ("external_id",)
# An external id is a key of a unique B-tree index, whose entries must stay under ~2,700 bytes:
# 500 characters of up to 4 UTF-8 bytes each keep well inside it.
MAX_EXTERNAL_ID_CHARS = 500
FORMATS = ("csv", "jsonl")

_ALLOWED = frozenset(ALLOWED_PRIORITIES)
_ALLOWED_TEXT = ", ".join(str(p) for p in ALLOWED_PRIORITIES)
_MISSING = object()
# Each allowed priority as CSV text or a JSON integer, looked up before any slower parsing; the lookup
# is guarded by the value's exact class, so True and 1.0 (equal to 1) never match.
_PRIORITY_VALUES: dict[object, int] = {
    **{str(p): p for p in ALLOWED_PRIORITIES},
    **{p: p for p in ALLOWED_PRIORITIES},
}
_PRIORITY_CLASSES = (str, int)
# tuple.__new__ builds a NamedTuple in C; the class's own __new__ is Python code, and on the load's
# fast path a million calls of it cost 0.3 s.
_new_tuple = tuple.__new__


# The two per-row types are NamedTuples, immutable like the frozen dataclasses elsewhere: building a
# million frozen dataclasses took 3.4 s here against 0.2 s for tuples, a third of the load budget.
class RawRow(NamedTuple):
    """One record as read from the file, not yet checked; ``problem`` is set when it could not be read."""

    line: int
    external_id: object = None
    priority: object = _MISSING
    text: object = _MISSING
    problem: str | None = None


class IssueRow(NamedTuple):
    """A row that passed every check, ready to be written."""

    line: int
    external_id: str | None
    priority: int
    text: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line that was not loaded, and why."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of checking a file's rows: what can be loaded and what cannot."""

    good: tuple[IssueRow, ...]
    rejected: tuple[Rejection, ...]


def format_of(filename: str) -> str:
    """``csv`` or ``jsonl`` from a file name's suffix; IngestError names the accepted ones otherwise."""
    lowered = filename.lower()
    for suffix, fmt in ((".csv", "csv"), (".jsonl", "jsonl"), (".ndjson", "jsonl")):
        if lowered.endswith(suffix):
            return fmt
    raise IngestError(f"cannot tell the format of {filename!r}: name it *.csv, *.jsonl or *.ndjson")


def read_rows(lines: Iterable[str], fmt: str) -> Iterator[RawRow]:
    """The records of CSV (header line first) or JSONL text, in file order."""
    if fmt == "csv":
        return read_csv(lines)
    if fmt == "jsonl":
        return read_jsonl(lines)
    raise IngestError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")


def read_csv(lines: Iterable[str]) -> Iterator[RawRow]:
    """The records of CSV text whose first line names the columns; blank lines are skipped."""
    # Our own size check must see long texts whole, with a precise reason, instead of the csv
    # module's 131,072-character field limit splitting a record into garbage rows.
    csv.field_size_limit(1 << 30)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise IngestError("the file is empty: expected a header line naming priority and text") from None
    except csv.Error as exc:
        raise IngestError(f"line 1: cannot read the CSV header: {exc}") from exc
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
                if len(fields) >= width:
                    external = fields[i_external] if i_external is not None else None
                    yield RawRow(line, external, fields[i_priority], fields[i_text])
                elif fields:
                    yield RawRow(line, problem=f"has {len(fields)} fields but the header names {width}")
            return
        except csv.Error as exc:
            yield RawRow(last + 1, problem=f"malformed CSV: {exc}")
            last = reader.line_num


def read_jsonl(lines: Iterable[str]) -> Iterator[RawRow]:
    """The records of JSON Lines text: one JSON object per line; blank lines are skipped."""
    for line, content in enumerate(lines, start=1):
        if not content or content.isspace():
            continue
        try:
            record = json.loads(content)
        except ValueError as exc:
            yield RawRow(line, problem=f"not valid JSON: {exc}")
            continue
        if not isinstance(record, dict):
            yield RawRow(line, problem=f"expected a JSON object, got {type(record).__name__}")
            continue
        yield RawRow(
            line,
            record.get("external_id"),
            record.get("priority", _MISSING),
            record.get("text", _MISSING),
        )


def check(rows: Iterable[RawRow], *, max_text_chars: int, existing_ids: Collection[str] = ()) -> Checked:
    """Split ``rows`` into loadable rows and rejections (see ``check_rows``)."""
    good: list[IssueRow] = []
    rejected: list[Rejection] = []
    for outcome in check_rows(rows, max_text_chars=max_text_chars, existing_ids=existing_ids):
        if isinstance(outcome, Rejection):
            rejected.append(outcome)
        else:
            good.append(outcome)
    return Checked(tuple(good), tuple(rejected))


def check_rows(
    rows: Iterable[RawRow], *, max_text_chars: int, existing_ids: Collection[str] = ()
) -> Iterator[IssueRow | Rejection]:
    """Each row checked, in order: the row ready to write, or its rejection with every reason that applies.

    Lazy, so a loader can write good rows while the file is still being read. ``existing_ids`` are
    the external ids already in the target set. Within the file the first row with an external id
    keeps it; a later row repeating it is rejected, whatever became of the first.
    """
    if max_text_chars < 1:
        raise ValueError(f"max_text_chars must be >= 1, got {max_text_chars}")
    first_line: dict[str, int] = {}
    for row in rows:
        line, external, priority, text, problem = row
        # Fast path for the common good row; any doubt goes to _reasoned, which finds every reason.
        number = _PRIORITY_VALUES.get(priority) if priority.__class__ in _PRIORITY_CLASSES else None
        if (
            number is not None
            and text.__class__ is str
            and 0 < len(text) <= max_text_chars
            and not text.isspace()
            and "\x00" not in text
            and (text.isascii() or _is_utf8(text))
        ):
            if external is None or external == "":
                yield _new_tuple(IssueRow, (line, None, number, text))
                continue
            if external.__class__ is str and external.isascii() and len(external) <= MAX_EXTERNAL_ID_CHARS:
                external = external.strip()
                if external and "\x00" not in external and external not in first_line:
                    first_line[external] = line
                    if external not in existing_ids:
                        yield _new_tuple(IssueRow, (line, external, number, text))
                        continue
        yield _reasoned(row, max_text_chars, existing_ids, first_line)


def _reasoned(
    row: RawRow, max_text_chars: int, existing_ids: Collection[str], first_line: dict[str, int]
) -> IssueRow | Rejection:
    """The full check of one row, naming every reason it cannot be loaded."""
    if row.problem is not None:
        return Rejection(row.line, row.problem)
    reasons: list[str] = []
    priority = _priority(row.priority, reasons)
    text = _text(row.text, max_text_chars, reasons)
    external = _external_id(row.external_id, reasons)
    if external is not None:
        first = first_line.setdefault(external, row.line)
        if first != row.line:
            reasons.append(f"duplicate external_id {external!r} (first on line {first})")
        elif external in existing_ids:
            reasons.append(f"external_id {external!r} is already in the set")
    if reasons or priority is None or text is None:
        return Rejection(row.line, "; ".join(reasons))
    return IssueRow(row.line, external, priority, text)


def _priority(value: object, reasons: list[str]) -> int | None:
    if value is _MISSING or value is None or value == "":
        reasons.append("priority is missing")
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        digits = value.strip()
        if digits.lstrip("+-").isdigit() and digits.isascii():
            number = int(digits)
    if number is None:
        reasons.append(f"priority {value!r} is not an integer (allowed: {_ALLOWED_TEXT})")
        return None
    if number not in _ALLOWED:
        reasons.append(f"priority {number} is not allowed (allowed: {_ALLOWED_TEXT})")
        return None
    return number


def _text(value: object, max_chars: int, reasons: list[str]) -> str | None:
    if value is _MISSING or value is None:
        reasons.append("text is missing")
        return None
    if not isinstance(value, str):
        reasons.append(f"text must be a string, got {type(value).__name__}")
        return None
    before = len(reasons)
    if not value or value.isspace():
        reasons.append("text is empty or whitespace only")
    if "\x00" in value:
        reasons.append("text contains a NUL byte")
    if len(value) > max_chars:
        reasons.append(f"text is {len(value):,} characters, over the limit of {max_chars:,}")
    if not _is_utf8(value):
        reasons.append("text is not valid UTF-8")
    return value if len(reasons) == before else None


def _external_id(value: object, reasons: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        reasons.append(f"external_id must be a string or an integer, got {type(value).__name__}")
        return None
    text = str(value).strip()
    if not text:
        return None
    if "\x00" in text or not _is_utf8(text):
        reasons.append("external_id contains a NUL byte or invalid UTF-8")
    elif len(text) > MAX_EXTERNAL_ID_CHARS:
        reasons.append(f"external_id is {len(text):,} characters, over the limit of {MAX_EXTERNAL_ID_CHARS}")
    return text


def _is_utf8(value: str) -> bool:
    # Undecodable bytes read with errors="surrogateescape", and JSON's lone "\ud800" escapes, become
    # lone surrogates, which PostgreSQL would refuse mid-COPY; ASCII text needs no check.
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
