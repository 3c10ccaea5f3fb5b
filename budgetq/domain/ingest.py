"""Deciding row by row which issue records can be loaded and why not (records.py reads them).

Pure: records in, good rows and one reason per rejected line out.
The columns (CSV header names, or JSON object keys) are ``priority`` and ``text``, and optionally
``external_id``; other columns are ignored. A row is rejected, with its line number and the
reasons, when its text is missing, empty or whitespace only, holds a NUL byte (PostgreSQL text
cannot), is not valid UTF-8, or is over the size limit; when its priority is not an integer in
{15, 10, 5, 1}; or when its external id repeats one earlier in the file or already in the set.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

# The readers live in records.py; their names stay importable from here, as before.
from budgetq.domain.records import DEFAULT_MAX_FIELD_CHARS as DEFAULT_MAX_FIELD_CHARS
from budgetq.domain.records import FORMATS as FORMATS
from budgetq.domain.records import MISSING as _MISSING
from budgetq.domain.records import OPTIONAL_COLUMNS as OPTIONAL_COLUMNS
from budgetq.domain.records import REQUIRED_COLUMNS as REQUIRED_COLUMNS
from budgetq.domain.records import RawRow as RawRow
from budgetq.domain.records import format_of as format_of
from budgetq.domain.records import read_csv as read_csv
from budgetq.domain.records import read_jsonl as read_jsonl
from budgetq.domain.records import read_rows as read_rows

ALLOWED_PRIORITIES = (15, 10, 5, 1)
# An external id is a key of a unique B-tree index, whose entries must stay under ~2,700 bytes:
# 500 characters of up to 4 UTF-8 bytes each keep well inside it.
MAX_EXTERNAL_ID_CHARS = 500

_ALLOWED = frozenset(ALLOWED_PRIORITIES)
_ALLOWED_TEXT = ", ".join(str(p) for p in ALLOWED_PRIORITIES)
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
    # What --rejected-csv shows beside the reason; not part of what the rejection is.
    external_id: str | None = field(default=None, compare=False)
    raw: str | None = field(default=None, compare=False)  # the record's line(s) as in the file


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of checking a file's rows: what can be loaded and what cannot."""

    good: tuple[IssueRow, ...]
    rejected: tuple[Rejection, ...]


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
        line, external, priority, text, problem, _raw = row
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
    shown_id = row.external_id.strip() if isinstance(row.external_id, str) else None
    if row.problem is not None:
        return Rejection(row.line, row.problem, shown_id or None, row.raw)
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
        return Rejection(row.line, "; ".join(reasons), shown_id or None, row.raw)
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
