"""Migration 0010 adds ``run_diagnoses`` and ``latest_diagnoses`` (latest answer, else latest status) and
drops them again; the issue attributes are read from ``issues`` when it has them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from budgetq.adapters.store.engine import downgrade, make_engine, upgrade


def _views(conn: object) -> set[str]:
    rows = conn.execute(  # type: ignore[attr-defined]
        text("SELECT table_name FROM information_schema.views WHERE table_schema = current_schema()")
    )
    return {r[0] for r in rows}


def test_latest_diagnoses_keeps_the_latest_answer_else_the_latest_status(
    fresh_database: Callable[[], str],
) -> None:
    # Given a database at 0008 with two issues and three runs: issue a answered in run 1 and failed in
    # run 3, issue b failed in run 1 and cancelled in run 2
    url = fresh_database()
    downgrade(url, "0008")
    engine = make_engine(url)
    with engine.begin() as conn:
        assert "latest_diagnoses" not in _views(conn)
        set_id = conn.scalar(text("INSERT INTO issue_sets (name) VALUES ('m10') RETURNING id"))
        a, b = conn.scalars(
            text(
                "INSERT INTO issues (set_id, external_id, priority, text, chars) VALUES "
                "(:s, 'a', 15, 'x', 1), (:s, 'b', 5, 'y', 1) RETURNING id"
            ),
            {"s": set_id},
        ).all()
        runs = conn.scalars(
            text(
                "INSERT INTO runs (set_id, kind, status, mode, model, max_tokens, safe_utilization, "
                "context_window, calibration) SELECT :s, 'manual', 'succeeded', 'standin', 'm', 100, 0.75, "
                "1000, 1.0 FROM generate_series(1, 3) RETURNING id"
            ),
            {"s": set_id},
        ).all()
        batch = conn.scalar(
            text(
                "INSERT INTO batches (run_id, seq, priority, status, issue_count, input_tokens_est, "
                "output_tokens_est, max_tokens) VALUES (:r, 0, 15, 'succeeded', 1, 1, 1, 100) RETURNING id"
            ),
            {"r": runs[0]},
        )
        call = conn.scalar(
            text(
                "INSERT INTO llm_calls (run_id, batch_id, attempt, model, mode, status, "
                "estimated_input_tokens, max_tokens, context_window, cost_usd, started_at, finished_at) "
                "VALUES (:r, :b, 1, 'm', 'standin', 'ok', 1, 100, 1000, 0.5, now(), now()) RETURNING id"
            ),
            {"r": runs[0], "b": batch},
        )
        conn.execute(text("INSERT INTO batch_issues VALUES (:b, :i)"), {"b": batch, "i": a})
        statuses = [
            (runs[0], a, "answered"),
            (runs[0], b, "failed"),
            (runs[1], b, "cancelled"),
            (runs[2], a, "failed"),
        ]
        for run, issue, status in statuses:
            conn.execute(
                text("INSERT INTO run_issues VALUES (:r, :i, 15, 1, :st, :why)"),
                {
                    "r": run,
                    "i": issue,
                    "st": status,
                    "why": None if status == "answered" else f"{status} here",
                },
            )
        conn.execute(
            text(
                "INSERT INTO results (run_id, issue_id, batch_id, llm_call_id, category, diagnosis, "
                "proposed_fix, confidence) VALUES (:r, :i, :b, :c, 'nulls', 'Grüße: a diagnosis', 'fix', 0.9)"
            ),
            {"r": runs[0], "i": a, "b": batch, "c": call},
        )
    engine.dispose()

    # When it is upgraded to 0010
    upgrade(url, "0010")

    # Then each issue has one row: a keeps its answer from run 1, b its latest status (cancelled, run 2)
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT external_id, run_id, status, reason, diagnosis, cost_usd, owner "
                "FROM latest_diagnoses WHERE set_id = :s ORDER BY external_id"
            ),
            {"s": set_id},
        ).all()
        per_run = conn.scalar(text("SELECT count(*) FROM run_diagnoses WHERE set_id = :s"), {"s": set_id})
    assert [tuple(r) for r in rows] == [
        ("a", runs[0], "answered", None, "Grüße: a diagnosis", 0.5, None),
        ("b", runs[1], "cancelled", "cancelled here", None, 0, None),
    ]
    assert per_run == 4

    # And downgrading drops both views, keeping the data
    downgrade(url, "0008")
    with engine.begin() as conn:
        assert not {"latest_diagnoses", "run_diagnoses"} & _views(conn)
        assert conn.scalar(text("SELECT count(*) FROM results")) == 1
        conn.execute(text("DELETE FROM issue_sets WHERE id = :s"), {"s": set_id})
    upgrade(url)
    engine.dispose()


def test_issue_attributes_are_read_from_issues(fresh_database: Callable[[], str]) -> None:
    # Given a database at head, where the loaders' migration (0009) added the issue attributes before 0010
    url = fresh_database()
    engine = make_engine(url)

    # Then the view selects every attribute from the issue row
    with engine.begin() as conn:
        definition = conn.scalar(text("SELECT pg_get_viewdef('run_diagnoses')"))
    engine.dispose()
    for column in ("owner", "dataset", "tags", "source", "check_name", "column_name"):
        assert f"i.{column}" in definition, column
