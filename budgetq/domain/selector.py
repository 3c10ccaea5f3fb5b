"""Which issues of a set a run covers: all, the failed ones, listed ids, one priority, or the unanswered.

A selector travels as JSON (in ``runs.selector`` and in REPROCESS task messages) and is turned into
SQL by ``budgetq.adapters.store.selection``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from budgetq.domain.ingest import ALLOWED_PRIORITIES
from budgetq.errors import SelectorError


class SelectorKind(StrEnum):
    """The kinds of selection."""

    ALL = "all"
    FAILED = "failed"  # issues whose latest status in the set's runs is failed or cancelled
    ISSUES = "issues"  # issues listed by id
    PRIORITY = "priority"  # issues of one priority
    UNANSWERED = "unanswered"  # issues no run has answered, nor is answering (the nightly default)


@dataclass(frozen=True)
class Selector:
    """A selection of a set's issues."""

    kind: SelectorKind = SelectorKind.ALL
    issue_ids: tuple[int, ...] = ()
    priority: int | None = None

    def __post_init__(self) -> None:
        if self.kind is SelectorKind.ISSUES and not self.issue_ids:
            raise SelectorError("an issue selection needs at least one issue id")
        if self.kind is SelectorKind.PRIORITY and self.priority not in ALLOWED_PRIORITIES:
            allowed = ", ".join(str(p) for p in ALLOWED_PRIORITIES)
            raise SelectorError(f"priority {self.priority} is not one of {allowed}")

    def describe(self) -> str:
        """The selection in words, for messages."""
        if self.kind is SelectorKind.ISSUES:
            shown = ", ".join(str(i) for i in self.issue_ids[:10])
            more = f" and {len(self.issue_ids) - 10} more" if len(self.issue_ids) > 10 else ""
            return f"issues {shown}{more}"
        if self.kind is SelectorKind.PRIORITY:
            return f"the priority-{self.priority} issues"
        return {
            SelectorKind.ALL: "all issues",
            SelectorKind.FAILED: "the issues that failed or were cancelled in their latest run",
            SelectorKind.UNANSWERED: "the issues not yet answered",
        }[self.kind]

    def to_json(self) -> dict[str, object]:
        """The selector as a JSON object."""
        out: dict[str, object] = {"kind": self.kind.value}
        if self.issue_ids:
            out["issue_ids"] = list(self.issue_ids)
        if self.priority is not None:
            out["priority"] = self.priority
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Selector:
        """A selector from ``to_json``'s output; SelectorError names what is wrong."""
        try:
            kind = SelectorKind(str(data.get("kind", SelectorKind.ALL.value)))
        except ValueError:
            known = ", ".join(k.value for k in SelectorKind)
            raise SelectorError(f"unknown selector kind {data.get('kind')!r}; known: {known}") from None
        ids = data.get("issue_ids") or []
        priority = data.get("priority")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise SelectorError(f"issue_ids must be a list of integers, got {ids!r}")
        if priority is not None and not isinstance(priority, int):
            raise SelectorError(f"priority must be an integer, got {priority!r}")
        return cls(kind, tuple(ids), priority)


def check_one_option(failed_only: bool, issues: str | None, priority: int | None) -> None:
    """SelectorError when more than one of the reprocess options is given."""
    options = (("--failed-only", failed_only), ("--issues", issues), ("--priority", priority))
    given = [name for name, value in options if value not in (False, None)]
    if len(given) > 1:
        raise SelectorError(
            f"choose one of --failed-only, --issues and --priority, not {' and '.join(given)}"
        )


def from_options(failed_only: bool, issues: str | None, priority: int | None) -> Selector:
    """The selector that reprocess options ask for (at most one of them); all issues when none is given."""
    check_one_option(failed_only, issues, priority)
    if failed_only:
        return Selector(SelectorKind.FAILED)
    if issues is not None:
        return Selector(SelectorKind.ISSUES, parse_ids(issues.split(",")))
    if priority is not None:
        return Selector(SelectorKind.PRIORITY, priority=priority)
    return Selector()


# The largest id a table holds (PostgreSQL bigint): a larger number names nothing, and sent to PostgreSQL
# it is an error instead.
MAX_ID = 2**63 - 1


def as_id(text: str) -> int | None:
    """The id ``text`` writes in ASCII digits, if it is one a table can hold; None otherwise."""
    if not (text.isascii() and text.isdigit()):
        return None  # "٣" and "²" pass isdigit(); int() reads the first as 3 and refuses the second
    number = int(text)
    return number if number <= MAX_ID else None


def parse_ids(values: Sequence[str]) -> tuple[int, ...]:
    """Issue ids from text such as ``["12", " 14"]``, duplicates dropped, order kept."""
    ids: dict[int, None] = {}
    for value in values:
        text = value.strip()
        if not text:
            continue
        number = as_id(text)
        if number is None:
            raise SelectorError(
                f"issue id {text!r} is not a number written in 0-9 (at most {MAX_ID:,}); "
                "pass ids as --issues 12,14,15"
            )
        ids[number] = None
    if not ids:
        raise SelectorError("--issues needs at least one issue id, e.g. --issues 12,14,15")
    return tuple(ids)


def parse_refs(text: str) -> tuple[str, ...]:
    """Issue references (external ids or internal ids) from ``--issues A-1, 14``: duplicates dropped."""
    refs = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not refs:
        raise SelectorError("--issues needs at least one issue id, e.g. --issues 12,14 or --issues DQ-7,DQ-9")
    return refs
