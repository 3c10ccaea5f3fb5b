"""Answer reuse in the store: earlier paid answers found by key, reused rows written, duplicates fanned out.

Every lookup is an indexed equality on ``results.reuse_key`` (``results_reuse_key_idx``), done for a
chunk of keys in one statement: a run of N issues costs N / ``KEY_CHUNK`` lookups, never a scan of the
history per issue.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Numeric, Text

from budgetq.adapters.store.models import Issue, IssueSet, RunIssue
from budgetq.adapters.store.selection import issue_filter, open_in_set
from budgetq.domain.selector import Selector
from budgetq.domain.statuses import IssueStatus

KEY_CHUNK = 10_000


@dataclass(frozen=True)
class PaidAnswer:
    """An answer bought earlier, as a reuse sees it."""

    result_id: int
    run_id: int
    answered_at: dt.datetime
    # What it cost when bought: its call's cost over the answers that call recorded.
    cost_usd: Decimal


@dataclass(frozen=True)
class ReusedIssue:
    """An issue of a new run answered by an earlier paid answer."""

    issue_id: int
    priority: int
    input_tokens: int
    key: str
    answer: PaidAnswer


@dataclass(frozen=True)
class Copy:
    """A duplicate inside a run: its carrier is sent, it takes the carrier's answer or fate."""

    issue_id: int
    priority: int
    input_tokens: int
    key: str
    same_as: int
    status: str
    reason: str | None


def set_reuses_answers(session: Session, set_id: int) -> bool:
    """Whether the set lets its issues take earlier answers and share one call between duplicates."""
    return bool(session.scalar(select(IssueSet.reuse_answers).where(IssueSet.id == set_id)))


def set_reuse_answers(session: Session, set_id: int, enabled: bool) -> None:
    """Turn answer reuse on or off for the set's future runs."""
    session.execute(update(IssueSet).where(IssueSet.id == set_id).values(reuse_answers=enabled))


def key_material(
    session: Session, set_id: int, selector: Selector | None, chunk: int = 20_000
) -> Iterator[Sequence[tuple[int, str, str | None]]]:
    """(id, text, external id) of the issues a plan covers, ``chunk`` rows at a time (streamed)."""
    where = issue_filter(set_id, selector) if selector is not None else open_in_set(set_id)
    stmt = select(Issue.id, Issue.text, Issue.external_id).where(where).execution_options(yield_per=chunk)
    for part in session.execute(stmt).partitions():
        yield [(int(i), str(t), e) for i, t, e in part]


# The newest eligible paid answer per key; a reused row is never a source (its age is its source's).
_PAID = text(
    """
WITH found AS (
    SELECT DISTINCT ON (r.reuse_key) r.reuse_key, r.id, r.run_id, r.created_at, r.llm_call_id
    FROM results r
    JOIN llm_calls c ON c.id = r.llm_call_id
    WHERE r.reuse_key = ANY(:keys) AND r.reuse_key IS NOT NULL AND r.llm_call_id IS NOT NULL
        AND r.created_at >= :since AND r.confidence >= :confidence AND c.would_have_cost = :unbilled
    ORDER BY r.reuse_key, r.created_at DESC, r.id DESC
), per_call AS (
    SELECT r.llm_call_id, count(*) AS answers
    FROM results r WHERE r.llm_call_id IN (SELECT llm_call_id FROM found)
    GROUP BY r.llm_call_id
)
SELECT f.reuse_key, f.id, f.run_id, f.created_at, round(c.cost_usd / p.answers, 6) AS cost_usd
FROM found f
JOIN llm_calls c ON c.id = f.llm_call_id
JOIN per_call p ON p.llm_call_id = f.llm_call_id
"""
).bindparams(bindparam("keys", type_=ARRAY(Text)))


def paid_answers(
    session: Session, keys: Sequence[str], *, since: dt.datetime, min_confidence: float, unbilled: bool
) -> dict[str, PaidAnswer]:
    """The newest paid answer per key among ``keys``, bought since ``since`` with at least
    ``min_confidence``; ``unbilled``: from stand-in or replayed calls (a live run never takes those)."""
    found: dict[str, PaidAnswer] = {}
    for start in range(0, len(keys), KEY_CHUNK):
        rows = session.execute(
            _PAID,
            {
                "keys": list(keys[start : start + KEY_CHUNK]),
                "since": since,
                "confidence": min_confidence,
                "unbilled": unbilled,
            },
        )
        for key, result_id, run_id, answered_at, cost in rows:
            found[key] = PaidAnswer(int(result_id), int(run_id), answered_at, Decimal(cost))
    return found


_COPY_ANSWERS = text(
    """
INSERT INTO results (run_id, issue_id, batch_id, llm_call_id, category, diagnosis, proposed_fix,
    confidence, reuse_key, reused_from_result_id, saved_usd)
SELECT :run, v.issue_id, NULL, NULL, s.category, s.diagnosis, s.proposed_fix, s.confidence,
    v.reuse_key, s.id, v.saved
FROM unnest(:issues, :sources, :keys, :saved) AS v(issue_id, source_id, reuse_key, saved)
JOIN results s ON s.id = v.source_id
ON CONFLICT ON CONSTRAINT results_run_issue_key DO NOTHING
"""
).bindparams(
    bindparam("issues", type_=ARRAY(BigInteger)),
    bindparam("sources", type_=ARRAY(BigInteger)),
    bindparam("keys", type_=ARRAY(Text)),
    bindparam("saved", type_=ARRAY(Numeric(18, 6))),
)


def write_reused(session: Session, run_id: int, reused: Sequence[ReusedIssue]) -> None:
    """The run's reused issues: each ends ``reused`` with a result row copying its earlier answer, free."""
    for start in range(0, len(reused), KEY_CHUNK):
        part = reused[start : start + KEY_CHUNK]
        statuses = [
            {
                "run_id": run_id,
                "issue_id": r.issue_id,
                "priority": r.priority,
                "input_tokens_est": r.input_tokens,
                "status": IssueStatus.REUSED.value,
                "reason": (
                    f"reused the answer of run {r.answer.run_id} from "
                    f"{r.answer.answered_at:%Y-%m-%d %H:%M} UTC (result {r.answer.result_id})"
                ),
                "reuse_key": r.key,
            }
            for r in part
        ]
        session.execute(pg_insert(RunIssue), statuses)
        session.execute(
            _COPY_ANSWERS,
            {
                "run": run_id,
                "issues": [r.issue_id for r in part],
                "sources": [r.answer.result_id for r in part],
                "keys": [r.key for r in part],
                "saved": [r.answer.cost_usd for r in part],
            },
        )


def write_copies(session: Session, run_id: int, copies: Sequence[Copy]) -> None:
    """The run's duplicates: a ``run_issues`` row each, waiting on (or sharing the fate of) its carrier."""
    rows = [
        {
            "run_id": run_id,
            "issue_id": c.issue_id,
            "priority": c.priority,
            "input_tokens_est": c.input_tokens,
            "status": c.status,
            "reason": c.reason,
            "reuse_key": c.key,
            "same_as_issue_id": c.same_as,
        }
        for c in copies
    ]
    for start in range(0, len(rows), KEY_CHUNK):
        session.execute(pg_insert(RunIssue), rows[start : start + KEY_CHUNK])
