"""The plan of every per-batch statement on a 1M-issue run: is each one O(batch), not O(run)?

Run: ``uv run python bench/explain.py [--n 1000000] [--done 0.5]`` with BUDGETQ_DATABASE_URL set to a
PostgreSQL server (a fresh database is made and dropped after).

Builds a run of ``--n`` issues in 100-issue batches by plain SQL (generate_series), ``--done`` of it
answered (batches, results, run_issues, billed live llm_calls and settled reservations), ANALYZEs,
then drives one batch through the store's own functions, as a worker does (claim, calibration read,
reserve, record the attempt, settle, write results and statuses, completion check), and the progress
poll; then the same with a run cap and a daily cap that never bind. Every statement they send is first
run under ``EXPLAIN (ANALYZE, BUFFERS)`` in a savepoint that is rolled back. Prints, per statement,
the step, the statement's head, the plan's scan lines, its shared buffers and time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import time
from decimal import Decimal
from typing import Any

from pipeline import _fresh_database  # the bench's own fresh databases (bench/pipeline.py)
from sqlalchemy import event, text

from budgetq.adapters.store import batches, calibration, calls, completion, runs, spend
from budgetq.adapters.store.engine import make_engine, make_sessions, transaction
from budgetq.domain.answers import Answer
from budgetq.domain.calls import Attempt
from budgetq.domain.pricing import Usage
from budgetq.domain.statuses import CallOutcome

BUILD = [
    "INSERT INTO issue_sets (name) VALUES ('explain')",
    "INSERT INTO issues (set_id, external_id, priority, text, chars) "
    "SELECT s.id, 'x' || g, (ARRAY[15, 10, 5, 1])[1 + g % 4], "
    "'Table t_' || g % 97 || ' column c has nulls since partition ' || g, 60 "
    "FROM generate_series(1, :n) g, issue_sets s",
    "INSERT INTO runs (set_id, kind, status, mode, model, max_tokens, safe_utilization, context_window, "
    "calibration) SELECT id, 'manual', 'running', 'live', 'claude-sonnet-4-6', 16384, 0.75, 200000, 1.35 "
    "FROM issue_sets",
    "INSERT INTO batches (run_id, seq, priority, status, issue_count, input_tokens_est, output_tokens_est, "
    "max_tokens, finished_at) SELECT r.id, g, 1, CASE WHEN g <= :done THEN 'succeeded' ELSE 'queued' END, "
    "100, 4000, 9000, 16384, CASE WHEN g <= :done THEN now() END FROM generate_series(1, :batches) g, runs r",
    "INSERT INTO batch_issues (batch_id, issue_id) SELECT b0.id + (i.id - i0.id) / 100, i.id FROM issues i, "
    "(SELECT min(id) AS id FROM batches) b0, (SELECT min(id) AS id FROM issues) i0",
    "INSERT INTO run_issues (run_id, issue_id, priority, input_tokens_est, status) SELECT b.run_id, "
    "bi.issue_id, 1, 40, CASE WHEN b.status = 'succeeded' THEN 'answered' ELSE 'pending' END "
    "FROM batch_issues bi JOIN batches b ON b.id = bi.batch_id",
    "INSERT INTO llm_calls (run_id, batch_id, attempt, model, mode, request_id, status, "
    "estimated_input_tokens, input_tokens, output_tokens, billed_input_tokens, max_tokens, context_window, "
    "cost_usd, would_have_cost, started_at, finished_at) SELECT run_id, id, 1, 'claude-sonnet-4-6', 'live', "
    "'req_' || id, 'ok', 4000, 4100, 9000, 4100, 16384, 200000, 0.15, false, now(), now() "
    "FROM batches WHERE status = 'succeeded'",
    "INSERT INTO results (run_id, issue_id, batch_id, llm_call_id, category, diagnosis, proposed_fix, "
    "confidence) SELECT c.run_id, bi.issue_id, c.batch_id, c.id, 'null_values', 'empty strings', 'fix', 0.8 "
    "FROM llm_calls c JOIN batch_issues bi ON bi.batch_id = c.batch_id",
    "INSERT INTO daily_spend (day) VALUES ((now() AT TIME ZONE 'UTC')::date)",
    "INSERT INTO spend_reservations (run_id, batch_id, day, amount_usd, actual_usd, status, settled_at, "
    "settled_day) SELECT run_id, batch_id, (now() AT TIME ZONE 'UTC')::date, 0.3, cost_usd, 'settled', "
    "now(), (now() AT TIME ZONE 'UTC')::date FROM llm_calls",
]
SCAN = re.compile(r"(Scan|Seq|Index|Nested Loop|Hash Join|Sort|Aggregate|LockRows|Insert|Update|Limit)")


class Explainer:
    """Runs every statement under EXPLAIN (ANALYZE, BUFFERS) first, in a savepoint rolled back."""

    def __init__(self) -> None:
        self.step = ""
        self.on = False

    def __call__(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if not self.on or many or head not in ("SELECT", "UPDATE", "INSERT", "DELETE", "WITH"):
            return
        cursor.execute("SAVEPOINT explain")
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        plan = [row[0] for row in cursor.fetchall()]
        cursor.execute("ROLLBACK TO SAVEPOINT explain")
        shown = " ".join(statement.split())[:110]
        buffers = next((line.strip() for line in plan if "Buffers:" in line), "Buffers: none")
        took = next((line.strip() for line in plan if line.startswith("Execution Time")), "")
        print(f"\n### {self.step}\n`{shown}`\n")
        for line in plan:
            if SCAN.search(line) and "Buffers" not in line:
                print("    " + re.sub(r" \(cost=[^)]*\)", "", line.rstrip()))
        print(f"    top: {buffers}; {took}")


def _attempt() -> Attempt:
    now = dt.datetime.now(dt.UTC)
    usage = Usage(input_tokens=4100, output_tokens=9000)
    return Attempt(1, now, now, CallOutcome.OK, 200, "req_x", usage=usage, cost_usd=Decimal("0.15"))


def main() -> None:
    """Build the run, then print the plans of one batch's statements, uncapped and capped."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--done", type=float, default=0.5)
    args = parser.parse_args()
    server = os.environ["BUDGETQ_DATABASE_URL"]
    n_batches = args.n // 100
    with _fresh_database(server) as url:
        engine = make_engine(url, pool_size=4)
        sessions = make_sessions(engine)
        started = time.monotonic()
        with transaction(sessions) as session:
            for sql in BUILD:
                session.execute(
                    text(sql), {"n": args.n, "batches": n_batches, "done": int(n_batches * args.done)}
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print(f"built {args.n:,} issues, {n_batches:,} batches in {time.monotonic() - started:.0f} s")
        explain = Explainer()
        event.listen(engine, "before_cursor_execute", explain)
        with transaction(sessions) as session:
            run_id = session.scalar(text("SELECT id FROM runs"))
            queued = list(
                session.scalars(text("SELECT id FROM batches WHERE status = 'queued' ORDER BY id LIMIT 2"))
            )
        for label, batch_id, cap in (("", queued[0], None), ("capped: ", queued[1], Decimal("1000000"))):
            if cap is not None:
                with transaction(sessions) as session:
                    session.execute(text("UPDATE runs SET spend_cap_usd = :c"), {"c": cap})
            explain.on = True
            explain.step = f"{label}claim"
            with transaction(sessions) as session:
                claim = batches.claim(session, batch_id, 60)
            assert claim is not None
            explain.step = f"{label}calibration read"
            with transaction(sessions) as session:
                calibration.observed_ratios(session, claim.model, max_age=calibration.FRESH_FOR)
            explain.step = f"{label}reserve, with the attempt's pending row"
            opened: list[int] = []
            with transaction(sessions) as session:

                def open_row(
                    held: spend.Reservation, claim: batches.Claim = claim, opened: list[int] = opened
                ) -> None:
                    # As the worker's spend gate does: the row before the run's counter (capped runs).
                    opened.append(
                        calls.open_attempt(
                            session,
                            claim,
                            1,
                            reservation_id=held.id,
                            worst_case_usd=Decimal("0.3"),
                            estimated_input=4000,
                            counted_input=None,
                            host="explain",
                        )
                    )

                reservation = spend.reserve(
                    session, run_id, batch_id, Decimal("0.3"), cap, capped=claim.capped, before_hold=open_row
                )
            call_id = opened[0]
            explain.step = f"{label}settle, with the attempt's row"
            with transaction(sessions) as session:
                calls.close_attempt(session, call_id, claim, _attempt(), Decimal(0))
                spend.settle(session, reservation, Decimal("0.15"))
            explain.step = f"{label}write results and run_issues, close the batch"
            answers = [Answer(i, "null_values", "empty strings", "fix", 0.8) for i in claim.issue_ids]
            with transaction(sessions) as session:
                batches.complete(session, claim, call_id, answers, [], cost_usd=Decimal("0.15"))
                explain.step = f"{label}completion check"
                completion.finish_if_done(session, run_id)
                explain.step = f"{label}completion re-check after COMMIT"
            if not label:
                explain.step = "progress poll of a large run (`budgetq watch`, by batch)"
                with transaction(sessions) as session:
                    runs.progress(session, run_id, by_issue=False)
                explain.step = "progress by issue status (`budgetq watch` at the end, demo, bench)"
                with transaction(sessions) as session:
                    runs.progress(session, run_id)
            explain.on = False
        engine.dispose()


if __name__ == "__main__":
    main()
