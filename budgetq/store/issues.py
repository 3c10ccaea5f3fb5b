"""Issue sets and issues: creating sets, bulk inserts, and the cached token counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from budgetq.errors import NotFoundError
from budgetq.store.models import Issue, IssueSet


@dataclass(frozen=True)
class NewIssue:
    """An issue to insert."""

    priority: int
    text: str
    external_id: str | None = None


@dataclass(frozen=True)
class IssueRow:
    """An issue as the planner sees it."""

    id: int
    priority: int
    chars: int
    raw_tokens: int


def create_set(session: Session, name: str, *, nightly: bool = False, model: str | None = None) -> int:
    """Create an issue set and return its id."""
    issue_set = IssueSet(name=name, nightly=nightly, model=model)
    session.add(issue_set)
    session.flush()
    return issue_set.id


def set_id_by_name(session: Session, name: str) -> int:
    """The id of the set called ``name``; NotFoundError names the known sets otherwise."""
    found = session.scalar(select(IssueSet.id).where(IssueSet.name == name))
    if found is None:
        known = session.scalars(select(IssueSet.name).order_by(IssueSet.name).limit(10)).all()
        raise NotFoundError(f"no issue set named {name!r}; known sets: {', '.join(known) or 'none'}")
    return found


def insert_issues(session: Session, set_id: int, issues: Iterable[NewIssue]) -> int:
    """Insert issues into a set in one multi-row statement; return how many."""
    rows = [
        {
            "set_id": set_id,
            "external_id": i.external_id,
            "priority": i.priority,
            "text": i.text,
            "chars": len(i.text),
        }
        for i in issues
    ]
    if rows:
        session.execute(insert(Issue), rows)
    return len(rows)


def uncounted(session: Session, set_id: int, encoding: str) -> list[tuple[int, str]]:
    """(id, text) of the set's issues whose token count is missing or from another encoding."""
    stmt = select(Issue.id, Issue.text).where(
        Issue.set_id == set_id, (Issue.raw_tokens.is_(None)) | (Issue.token_encoding != encoding)
    )
    return [(r.id, r.text) for r in session.execute(stmt)]


def save_counts(session: Session, counts: Sequence[tuple[int, int]], encoding: str, version: str) -> None:
    """Store raw token counts, one (issue id, count) pair each."""
    if not counts:
        return
    table = Issue.__table__
    assert isinstance(table, Table)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(raw_tokens=bindparam("b_tokens"), token_encoding=encoding, calibration_version=version)
    )
    session.execute(stmt, [{"b_id": i, "b_tokens": n} for i, n in counts])


def planning_rows(session: Session, set_id: int, issue_ids: Sequence[int] | None = None) -> list[IssueRow]:
    """The set's issues in arrival order (optionally only ``issue_ids``), with their cached counts."""
    stmt = select(Issue.id, Issue.priority, Issue.chars, Issue.raw_tokens).where(Issue.set_id == set_id)
    if issue_ids is not None:
        stmt = stmt.where(Issue.id.in_(issue_ids))
    rows = session.execute(stmt.order_by(Issue.id))
    return [IssueRow(r.id, r.priority, r.chars, r.raw_tokens or 0) for r in rows]
