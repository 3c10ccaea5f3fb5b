"""Issue sets and issues: creating sets, bulk inserts, and the cached token counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from budgetq.adapters.store.models import Issue, IssueSet, IssueTokens
from budgetq.adapters.store.selection import issue_filter, open_in_set
from budgetq.domain.selector import Selector
from budgetq.errors import NotFoundError


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


def set_name(session: Session, set_id: int) -> str:
    """The name of set ``set_id``; NotFoundError when there is none."""
    name = session.scalar(select(IssueSet.name).where(IssueSet.id == set_id))
    if name is None:
        raise NotFoundError(f"no issue set with id {set_id}")
    return name


def nightly_sets(session: Session) -> list[tuple[int, str]]:
    """(id, name) of the sets marked for nightly processing, oldest first."""
    stmt = select(IssueSet.id, IssueSet.name).where(IssueSet.nightly.is_(True)).order_by(IssueSet.id)
    return [(set_id, name) for set_id, name in session.execute(stmt)]


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


def count_stale(session: Session, set_id: int, encoding: str, version: str) -> int:
    """How many of the set's issues have no token count, or one from another encoding or version."""
    stale = _stale_issues(set_id, encoding, version).subquery()
    return session.scalar(select(func.count()).select_from(stale)) or 0


def stale_texts(
    session: Session, set_id: int, encoding: str, version: str, chunk: int
) -> Iterator[list[tuple[int, str]]]:
    """(id, text) of the issues ``count_stale`` counts, ``chunk`` rows at a time from a server-side cursor."""
    # The driver's own named cursor: SQLAlchemy's row objects cost more than the fetch itself here.
    connection = session.connection()
    driver = connection.connection.driver_connection
    assert driver is not None
    query = _stale_issues(set_id, encoding, version).compile(
        dialect=connection.dialect, compile_kwargs={"literal_binds": True}
    )
    with driver.cursor(name="budgetq_stale_texts") as cursor:
        cursor.itersize = chunk
        cursor.execute(str(query))
        while rows := cursor.fetchmany(chunk):
            yield rows


@contextmanager
def count_writer(
    session: Session, set_id: int, encoding: str, version: str
) -> Iterator[Callable[[Iterable[tuple[int, int]]], None]]:
    """A function that COPYs (issue id, raw count) pairs of the set's stale issues into ``issue_tokens``
    with the encoding and calibration version, after dropping the set's out-of-date counts."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    driver.execute(
        "DELETE FROM issue_tokens t USING issues i WHERE i.set_id = %s AND t.issue_id = i.id "
        "AND (t.token_encoding <> %s OR t.calibration_version <> %s)",
        (set_id, encoding, version),
    )
    statement = (
        "COPY issue_tokens (issue_id, raw_tokens, token_encoding, calibration_version) "
        "FROM STDIN (FORMAT binary)"
    )

    def write(pairs: Iterable[tuple[int, int]]) -> None:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(("int8", "int4", "text", "text"))
            for issue_id, raw in pairs:
                copy.write_row((issue_id, raw, encoding, version))

    yield write


def _stale_issues(set_id: int, encoding: str, version: str) -> Select[int, str]:
    """(id, text) of the set's issues with no count, or one from another encoding or version."""
    stale = (
        IssueTokens.issue_id.is_(None)
        | (IssueTokens.token_encoding != encoding)
        | (IssueTokens.calibration_version != version)
    )
    return (
        select(Issue.id, Issue.text)
        .outerjoin(IssueTokens, IssueTokens.issue_id == Issue.id)
        .where(Issue.set_id == set_id, stale)
    )


def planning_rows(session: Session, set_id: int, selector: Selector | None = None) -> list[IssueRow]:
    """The set's issues in arrival order (only the ``selector``'s, if given), with their cached counts."""
    where = issue_filter(set_id, selector) if selector is not None else open_in_set(set_id)
    stmt = (
        select(Issue.id, Issue.priority, Issue.chars, IssueTokens.raw_tokens)
        .outerjoin(IssueTokens, IssueTokens.issue_id == Issue.id)
        .where(where)
    )
    rows = session.execute(stmt.order_by(Issue.id))
    return [IssueRow(issue_id, priority, chars, raw or 0) for issue_id, priority, chars, raw in rows]
