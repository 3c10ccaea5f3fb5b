"""What the HTML report shows, read from the cost views of migration 0003 (and the results table for the
diagnoses): each section one plain query, bounded by a day and a row limit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

Rows = tuple[Mapping[str, object], ...]

# Each section: its SQL, reading only the days from :since on.
_SECTIONS: Mapping[str, str] = {
    "cost_by_day_model": (
        "SELECT day, model, sum(cost_usd) AS cost_usd FROM cost_by_model WHERE day >= :since "
        "GROUP BY day, model ORDER BY day, model"
    ),
    "cost_by_set": (
        "SELECT set_name, sum(runs)::bigint AS run_days, sum(attempts)::bigint AS attempts, "
        "sum(cost_usd) AS cost_usd FROM cost_by_set WHERE day >= :since "
        "GROUP BY set_name ORDER BY sum(cost_usd) DESC, set_name LIMIT :limit"
    ),
    # Issues carry an owner and a dataset since migration 0009; an issue without one counts under "(none)".
    "cost_by_owner": (
        "SELECT COALESCE(i.owner, '(none)') AS owner, count(DISTINCT ci.issue_id)::bigint AS issues, "
        "sum(ci.cost_usd) AS cost_usd FROM cost_by_issue ci JOIN issues i ON i.id = ci.issue_id "
        "WHERE ci.run_id IN (SELECT run_id FROM cost_by_run WHERE day >= :since) "
        "GROUP BY 1 ORDER BY sum(ci.cost_usd) DESC, 1 LIMIT :limit"
    ),
    "cost_by_priority": (
        "SELECT priority, sum(issues)::bigint AS issues, sum(cost_usd) AS cost_usd FROM cost_by_priority "
        "WHERE day >= :since GROUP BY priority ORDER BY priority"
    ),
    "issues_by_status": (
        "SELECT s.status, s.issues FROM ("
        "SELECT sum(issues_answered)::bigint AS answered, sum(issues_failed)::bigint AS failed, "
        "sum(issues_oversize)::bigint AS oversize, sum(issues_deferred)::bigint AS deferred, "
        "sum(issues_pending)::bigint AS pending, sum(reused_issues)::bigint AS reused "
        "FROM cost_by_run WHERE day >= :since) t, "
        "LATERAL (VALUES ('answered', t.answered), ('reused', t.reused), ('failed', t.failed), "
        "('oversize', t.oversize), ('deferred', t.deferred), ('pending', t.pending)) AS s(status, issues) "
        "WHERE COALESCE(s.issues, 0) > 0"
    ),
    "diagnoses_by_category": (
        "SELECT res.category, count(*)::bigint AS diagnoses, round(avg(res.confidence)::numeric, 3) "
        "AS mean_confidence FROM results res JOIN runs r ON r.id = res.run_id "
        "WHERE (r.created_at AT TIME ZONE 'UTC')::date >= :since "
        "GROUP BY res.category ORDER BY count(*) DESC, res.category"
    ),
    "diagnoses_by_dataset": (
        "SELECT COALESCE(i.dataset, '(none)') AS dataset, count(*)::bigint AS diagnoses "
        "FROM results res JOIN runs r ON r.id = res.run_id JOIN issues i ON i.id = res.issue_id "
        "WHERE (r.created_at AT TIME ZONE 'UTC')::date >= :since "
        "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT :limit"
    ),
    "guard_by_day": (
        "SELECT day, count(*)::bigint AS calls, sum(estimated_input_tokens)::bigint AS estimated_tokens, "
        "sum(billed_input_tokens)::bigint AS billed_tokens, "
        "max(billed_to_estimated) AS worst_ratio, count(*) FILTER (WHERE over_guard)::bigint AS over_guard "
        "FROM guard_honesty WHERE day >= :since GROUP BY day ORDER BY day"
    ),
    "expensive_issues": (
        "SELECT ci.run_id, ci.issue_id, COALESCE(ci.external_id, ci.issue_id::text) AS issue, "
        "ci.priority, ci.status, ci.attempts, ci.billed_input_tokens, ci.output_tokens, ci.cost_usd "
        "FROM cost_by_issue ci WHERE ci.run_id IN (SELECT run_id FROM cost_by_run WHERE day >= :since) "
        "ORDER BY ci.cost_usd DESC, ci.run_id DESC, ci.issue_id LIMIT :limit"
    ),
    "latest_runs": (
        "SELECT run_id, day, set_name, kind, status, issues, issues_answered, issues_failed, "
        "issues_deferred, reused_issues, cost_usd, saved_usd, spend_cap_usd FROM cost_by_run "
        "WHERE day >= :since "
        "ORDER BY run_id DESC LIMIT :limit"
    ),
    # The latest answer per issue, newest issues' answers first: the searchable table.
    "diagnoses": (
        "SELECT * FROM (SELECT DISTINCT ON (res.issue_id) res.run_id, s.name AS set_name, "
        "COALESCE(i.external_id, i.id::text) AS issue, i.priority, res.category, res.confidence, "
        "res.diagnosis, res.proposed_fix, "
        # A reused answer says which run bought it, and when.
        "CASE WHEN src.id IS NOT NULL THEN 'run ' || src.run_id || ', ' || "
        "to_char(src.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') END AS reused_from "
        "FROM results res JOIN runs r ON r.id = res.run_id "
        "LEFT JOIN results src ON src.id = res.reused_from_result_id "
        "JOIN issues i ON i.id = res.issue_id JOIN issue_sets s ON s.id = i.set_id "
        "WHERE (r.created_at AT TIME ZONE 'UTC')::date >= :since "
        "ORDER BY res.issue_id, res.id DESC) latest ORDER BY run_id DESC, issue LIMIT :table_limit"
    ),
}


@dataclass(frozen=True)
class Dashboard:
    """The report's figures: per section, its rows as plain values (int, Decimal, str, date)."""

    since: dt.date
    generated_at: dt.datetime
    sections: Mapping[str, Rows]

    def rows(self, name: str) -> Rows:
        """The rows of one section (empty when it has none)."""
        return self.sections.get(name, ())


def read_dashboard(
    session: Session, since: dt.date, generated_at: dt.datetime, *, limit: int = 12, table_limit: int = 2000
) -> Dashboard:
    """Every section of the report over the days from ``since`` on; lists keep ``limit`` rows and the
    diagnoses table ``table_limit`` (the latest answer per issue)."""
    params = {"since": since, "limit": limit, "table_limit": table_limit}
    sections = {
        name: tuple(dict(row) for row in session.execute(text(sql), params).mappings())
        for name, sql in _SECTIONS.items()
    }
    return Dashboard(since=since, generated_at=generated_at, sections=sections)
