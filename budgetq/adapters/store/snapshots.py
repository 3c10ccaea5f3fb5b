"""Loading issues read from data-quality tools, appended or as a snapshot of what fails now.

Append (the default) inserts the checks whose id is new to the set and refuses the known ones, as a
CSV load does. A snapshot makes the set hold exactly the checks failing in this load: new ids are
inserted; a known id with new text gets it, is reopened if it was resolved, and is due again (its
token count is dropped by migration 0007's trigger and re-made at the next plan); a known id with the
same text keeps its state; open ids absent from the load are resolved. Either way it is one
transaction, with the set locked, so a crash or a concurrent load leaves nothing half-done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from psycopg.copy import QueuedLibpqWriter
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.store.models import Issue, IssueSet, Run
from budgetq.domain.statuses import IssueState
from budgetq.errors import IngestError

COPY_ISSUES = (
    "COPY issues (set_id, external_id, priority, text, chars, source, dataset, column_name, check_name, "
    "owner, tags) FROM STDIN (FORMAT binary)"
)
COPY_TYPES = ("int8", "text", "int2", "text", "int4", "text", "text", "text", "text", "text", "text[]")
UPDATE_CHANGED = (
    "UPDATE issues SET text = %s, chars = %s, priority = %s, dataset = %s, column_name = %s, "
    "check_name = %s, owner = %s, tags = %s, state = 'open', resolved_at = NULL, due_after_run = %s "
    "WHERE id = %s"
)


class ToolIssue(NamedTuple):
    """One finding ready to be stored: its identity, priority, text and the attributes reports group by."""

    external_id: str
    priority: int
    text: str
    source: str | None  # None: a CSV/JSONL row
    dataset: str | None
    column_name: str | None
    check_name: str | None
    owner: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class SnapshotReport:
    """What a tool load did to the set; the snapshot counts are zero for an append."""

    set_name: str
    set_id: int | None
    created: bool
    loaded: int
    refused: tuple[str, ...]
    inserted: int = 0
    changed: int = 0
    unchanged: int = 0
    reopened: int = 0
    resolved: int = 0


def load_tool_issues(
    sessions: sessionmaker[Session],
    set_name: str,
    issues: Sequence[ToolIssue],
    *,
    snapshot: bool,
    nightly: bool = False,
) -> SnapshotReport:
    """Store ``issues`` into the set ``set_name`` (created if new) in one transaction (see the module)."""
    with sessions() as session:
        try:
            set_id, created = _lock_set(session, set_name, nightly)
        except IntegrityError as exc:
            raise IngestError(
                f"another load created the set {set_name!r} at the same moment; run this load again"
            ) from exc
        known: dict[str, tuple[int, str, str]] = {
            str(external): (issue_id, text, state)
            for issue_id, external, text, state in session.execute(
                select(Issue.id, Issue.external_id, Issue.text, Issue.state).where(
                    Issue.set_id == set_id, Issue.external_id.is_not(None)
                )
            )
        }
        if not snapshot:
            fresh = [i for i in issues if i.external_id not in known]
            refused = tuple(i.external_id for i in issues if i.external_id in known)
            if not fresh and created:
                session.rollback()
                return SnapshotReport(set_name, None, False, 0, refused)
            _copy(session, set_id, fresh)
            session.commit()
            return SnapshotReport(set_name, set_id, created, len(fresh), refused, inserted=len(fresh))
        report = _apply_snapshot(session, set_name, set_id, created, issues, known)
        session.commit()
    return report


def _apply_snapshot(
    session: Session,
    set_name: str,
    set_id: int,
    created: bool,
    issues: Sequence[ToolIssue],
    known: dict[str, tuple[int, str, str]],
) -> SnapshotReport:
    fresh: list[ToolIssue] = []
    changed: list[tuple[object, ...]] = []
    reprioritised: list[tuple[int, int]] = []
    unchanged = reopened = 0
    # Answers of every run so far predate a changed text; a later run's answer counts again.
    last_run = session.scalar(select(func.coalesce(func.max(Run.id), 0))) or 0
    for issue in issues:
        found = known.get(issue.external_id)
        if found is None:
            fresh.append(issue)
            continue
        issue_id, text, state = found
        if text == issue.text and state == IssueState.OPEN.value:
            unchanged += 1
            reprioritised.append((issue.priority, issue_id))
            continue
        if text == issue.text:
            reopened += 1
        changed.append(
            (
                issue.text,
                len(issue.text),
                issue.priority,
                issue.dataset,
                issue.column_name,
                issue.check_name,
                issue.owner,
                list(issue.tags),
                last_run,
                issue_id,
            )
        )
    loaded_ids = {i.external_id for i in issues}
    gone = [
        issue_id
        for external, (issue_id, _, state) in known.items()
        if external not in loaded_ids and state == IssueState.OPEN.value
    ]
    driver = _driver_connection(session)
    with driver.cursor() as cursor:
        if changed:
            cursor.executemany(UPDATE_CHANGED, changed)
        if reprioritised:
            # Only rows whose priority differs are written: an unchanged check is not touched at all.
            cursor.executemany(
                "UPDATE issues SET priority = %s WHERE id = %s AND priority <> %s",
                [(p, i, p) for p, i in reprioritised],
            )
        if gone:
            cursor.execute(
                "UPDATE issues SET state = 'resolved', resolved_at = now() WHERE id = ANY(%s)", (gone,)
            )
    _copy(session, set_id, fresh)
    return SnapshotReport(
        set_name,
        set_id,
        created,
        loaded=len(fresh) + len(changed),
        refused=(),
        inserted=len(fresh),
        changed=len(changed) - reopened,
        unchanged=unchanged,
        reopened=reopened,
        resolved=len(gone),
    )


def _copy(session: Session, set_id: int, issues: Sequence[ToolIssue]) -> None:
    if not issues:
        return
    cursor = _driver_connection(session).cursor()
    with cursor, cursor.copy(COPY_ISSUES, writer=QueuedLibpqWriter(cursor)) as copy:
        copy.set_types(COPY_TYPES)
        for i in issues:
            copy.write_row(
                (
                    set_id,
                    i.external_id,
                    i.priority,
                    i.text,
                    len(i.text),
                    i.source,
                    i.dataset,
                    i.column_name,
                    i.check_name,
                    i.owner,
                    list(i.tags),
                )
            )


def _lock_set(session: Session, name: str, nightly: bool) -> tuple[int, bool]:
    """The set's id and whether it is new; an existing set stays locked until the load ends."""
    found = session.scalar(select(IssueSet.id).where(IssueSet.name == name).with_for_update())
    if found is None:
        issue_set = IssueSet(name=name, nightly=nightly)
        session.add(issue_set)
        session.flush()
        return issue_set.id, True
    if nightly:
        session.execute(update(IssueSet).where(IssueSet.id == found).values(nightly=True))
    return found, False


def _driver_connection(session: Session) -> Any:
    """The psycopg connection under the session's transaction."""
    return session.connection().connection.driver_connection
