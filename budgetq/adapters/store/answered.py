"""The rows of one answered batch, written in a fixed number of statements whatever the batch's size.

A batch's answers go in as one JSON row set (``jsonb_to_recordset``): one statement for the results,
one for the duplicates in the run that take the same answers, one for the statuses. Row-by-row
inserts and ``IN (…)`` lists of 100 parameters cost the worker and PostgreSQL more per batch than the
whole write a batch needs (docs/benchmarks.md, "Pipeline").
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, and_, bindparam, column, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Float, Text

from budgetq.adapters.store.models import LLMCall, Result, RunIssue
from budgetq.domain.answers import Answer
from budgetq.domain.statuses import IssueStatus

# jsonb_to_recordset(answers) AS a(issue_id, category, …): the answers as one row set, sent as one JSON
# document (json.dumps runs in C; five arrays of 100 values took psycopg's per-element array dumping
# several times as long).
_ANSWER_ROWS = (
    func.jsonb_to_recordset(bindparam("answers", type_=JSONB))
    .table_valued(
        column("issue_id", BigInteger),
        column("category", Text),
        column("diagnosis", Text),
        column("proposed_fix", Text),
        column("confidence", Float),
    )
    .render_derived(name="a", with_types=True)
)
# Core tables, not the ORM classes: with an ORM insert the answers' arrays would be read as bulk rows.
_RUN_ISSUES = cast(Table, RunIssue.__table__)
_RESULT_TABLE = cast(Table, Result.__table__)
_RESULTS = (
    pg_insert(_RESULT_TABLE)
    .from_select(
        [
            "run_id",
            "issue_id",
            "batch_id",
            "llm_call_id",
            "category",
            "diagnosis",
            "proposed_fix",
            "confidence",
            "reuse_key",
        ],
        select(
            bindparam("run", type_=BigInteger),
            _ANSWER_ROWS.c.issue_id,
            bindparam("batch", type_=BigInteger),
            bindparam("call", type_=BigInteger),
            _ANSWER_ROWS.c.category,
            _ANSWER_ROWS.c.diagnosis,
            _ANSWER_ROWS.c.proposed_fix,
            _ANSWER_ROWS.c.confidence,
            _RUN_ISSUES.c.reuse_key,
        ).select_from(
            _ANSWER_ROWS.outerjoin(
                _RUN_ISSUES,
                and_(
                    _RUN_ISSUES.c.run_id == bindparam("run"),
                    _RUN_ISSUES.c.issue_id == _ANSWER_ROWS.c.issue_id,
                ),
            )
        ),
    )
    .on_conflict_do_nothing(constraint="results_run_issue_key")
)

# The duplicates of the answered issues (planned with ``same_as_issue_id``) end ``reused`` and take a
# copy of their carrier's result, in one statement: the UPDATE picks the pending ones, the INSERT
# reads the carriers' results the statement before wrote.
_FAN_OUT = text(
    f"""
WITH copies AS (
    UPDATE run_issues ri
    SET status = '{IssueStatus.REUSED.value}',
        reason = 'same question as issue ' || ri.same_as_issue_id || ', answered in this run'
    WHERE ri.run_id = :run AND ri.same_as_issue_id = ANY(:carriers) AND ri.same_as_issue_id IS NOT NULL
        AND ri.status = '{IssueStatus.PENDING.value}'
    RETURNING ri.issue_id, ri.same_as_issue_id, ri.reuse_key
)
INSERT INTO results (run_id, issue_id, batch_id, llm_call_id, category, diagnosis, proposed_fix,
    confidence, reuse_key, reused_from_result_id, saved_usd)
SELECT :run, c.issue_id, NULL, NULL, r.category, r.diagnosis, r.proposed_fix, r.confidence,
    c.reuse_key, r.id, :share
FROM copies c
JOIN results r ON r.run_id = :run AND r.issue_id = c.same_as_issue_id
ON CONFLICT ON CONSTRAINT results_run_issue_key DO NOTHING
"""
).bindparams(bindparam("carriers", type_=ARRAY(BigInteger)))

_ANSWERED = text(
    f"""
UPDATE run_issues SET status = '{IssueStatus.ANSWERED.value}', reason = NULL
WHERE run_id = :run AND issue_id = ANY(:ids) AND status = '{IssueStatus.PENDING.value}'
"""
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


def write_answers(
    session: Session,
    run_id: int,
    batch_id: int,
    llm_call_id: int,
    answers: Sequence[Answer],
    cost_usd: Decimal | None = None,
) -> None:
    """Insert the batch's results (each with the reuse key its issue was planned with), give their
    duplicates in the run copies at their share of the call's cost (``cost_usd``, read from the call's
    row when not given), and mark the issues answered."""
    if not answers:
        return
    ids = [a.issue_id for a in answers]
    # On the connection: through the ORM session each of these statements cost twice the CPU.
    conn = session.connection()
    conn.execute(
        _RESULTS,
        {
            "run": run_id,
            "batch": batch_id,
            "call": llm_call_id,
            "answers": [
                {
                    "issue_id": a.issue_id,
                    "category": a.category,
                    "diagnosis": a.diagnosis,
                    "proposed_fix": a.proposed_fix,
                    "confidence": a.confidence,
                }
                for a in answers
            ],
        },
    )
    cost = cost_usd
    if cost is None:
        cost = session.scalar(select(LLMCall.cost_usd).where(LLMCall.id == llm_call_id)) or Decimal(0)
    share = (cost / len(ids)).quantize(Decimal("0.000001"))
    conn.execute(_FAN_OUT, {"run": run_id, "carriers": ids, "share": share})
    conn.execute(_ANSWERED, {"run": run_id, "ids": ids})
