"""A selector (``budgetq.domain.selector``) as a SQL condition on ``issues``, and the checks around it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from budgetq.adapters.store.models import Issue, Run, RunIssue
from budgetq.domain.selector import Selector, SelectorKind, as_id
from budgetq.domain.statuses import IssueState, IssueStatus, RunStatus
from budgetq.errors import NotFoundError


def issue_filter(set_id: int, selector: Selector) -> ColumnElement[bool]:
    """The WHERE condition on ``issues`` for the selected issues of the set."""
    in_set = open_in_set(set_id)
    if selector.kind is SelectorKind.PRIORITY:
        return and_(in_set, Issue.priority == selector.priority)
    if selector.kind is SelectorKind.ISSUES:
        return and_(in_set, Issue.id.in_(selector.issue_ids))
    if selector.kind is SelectorKind.FAILED:
        # Each issue's status in the latest of the set's runs that covered it.
        latest = (
            select(RunIssue.issue_id, RunIssue.status)
            .join(Run, Run.id == RunIssue.run_id)
            .where(Run.set_id == set_id)
            .ext(distinct_on(RunIssue.issue_id))
            .order_by(RunIssue.issue_id, RunIssue.run_id.desc())
            .subquery()
        )
        # Cancelled issues were never called: they are taken again with the failed ones.
        again = (IssueStatus.FAILED.value, IssueStatus.CANCELLED.value)
        failed = select(latest.c.issue_id).where(latest.c.status.in_(again))
        return and_(in_set, Issue.id.in_(failed))
    if selector.kind is SelectorKind.UNANSWERED:
        # Answered (or reused) by any run, or waiting in a run still going: either way not to be sent again.
        # An answer from before the issue's text last changed (a snapshot load) does not count.
        taken = exists().where(
            RunIssue.issue_id == Issue.id,
            RunIssue.run_id > func.coalesce(Issue.due_after_run, 0),
            RunIssue.status.in_((IssueStatus.ANSWERED.value, IssueStatus.REUSED.value))
            | (
                (RunIssue.status == IssueStatus.PENDING.value)
                & RunIssue.run_id.in_(select(Run.id).where(Run.status == RunStatus.RUNNING.value))
            ),
        )
        return and_(in_set, ~taken)
    return in_set


def open_in_set(set_id: int) -> ColumnElement[bool]:
    """The set's issues that still stand: a resolved issue is kept for history but never run."""
    return and_(Issue.set_id == set_id, Issue.state == IssueState.OPEN.value)


def count_selected(session: Session, set_id: int, selector: Selector) -> int:
    """How many of the set's issues the selector picks."""
    return session.scalar(select(func.count()).select_from(Issue).where(issue_filter(set_id, selector))) or 0


def unknown_ids(session: Session, set_id: int, issue_ids: Sequence[int]) -> list[int]:
    """Those of ``issue_ids`` that are not issues of the set."""
    found = set(session.scalars(select(Issue.id).where(Issue.set_id == set_id, Issue.id.in_(issue_ids))))
    return [i for i in issue_ids if i not in found]


def require_known(session: Session, set_id: int, set_name: str, selector: Selector) -> None:
    """Raise NotFoundError naming the listed ids that are not in the set."""
    if selector.kind is not SelectorKind.ISSUES:
        return
    unknown = unknown_ids(session, set_id, selector.issue_ids)
    if unknown:
        shown = ", ".join(str(i) for i in unknown[:10])
        raise NotFoundError(
            f"{len(unknown)} of the listed issue ids are not in set {set_name!r}: {shown}; "
            "ids are the numbers in run_issues.issue_id and results.issue_id"
        )


def resolve_refs(session: Session, set_id: int, set_name: str, refs: Sequence[str]) -> tuple[int, ...]:
    """Internal ids for ``refs``, in order: a reference is the external id of an issue of the set, or
    else (when it is a number) an internal id of one; NotFoundError names those that are neither."""
    rows = session.execute(
        select(Issue.external_id, Issue.id).where(Issue.set_id == set_id, Issue.external_id.in_(refs))
    )
    by_external: dict[str, int] = {str(external): int(internal) for external, internal in rows}
    numbers = {r: as_id(r) for r in refs if r not in by_external}
    wanted = [n for n in numbers.values() if n is not None]
    known = set(session.scalars(select(Issue.id).where(Issue.set_id == set_id, Issue.id.in_(wanted))))
    ids: dict[int, None] = {}
    unknown: list[str] = []
    for ref in refs:
        number = numbers.get(ref)
        if ref in by_external:
            ids[by_external[ref]] = None
        elif number is not None and number in known:
            ids[number] = None
        else:
            unknown.append(ref)
    if unknown:
        shown = ", ".join(unknown[:10])
        raise NotFoundError(
            f"{len(unknown)} of the listed issues are not in set {set_name!r}: {shown}; give external ids "
            "(as loaded) or internal ids (`budgetq results SET` shows both)"
        )
    return tuple(ids)
