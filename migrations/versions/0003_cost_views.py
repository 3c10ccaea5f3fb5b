"""Cost views: what the calls cost and where it went, by day, run, issue set, model, priority and issue.

Every view reads ``llm_calls`` (one row per HTTP attempt, failed or not), so failed attempts and
retries are counted and priced like any other attempt. A call's cost is shared across the issues of
its batch by their estimated input tokens, in micro-dollars with largest-remainder allocation, so
the issues' shares add up to the call's cost exactly (``cost_usd`` has 6 decimals: micro-dollars are
whole numbers). ``would_have_cost`` rows (stand-in and replayed calls) are priced at list price but
not billed: each view splits ``cost_usd`` into ``billed_cost_usd`` and ``would_have_cost_usd``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 12:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The same measures in every view over calls, so the views add up to one another.
CALL_MEASURES = """
    count(*) AS attempts,
    count(*) FILTER (WHERE ok) AS ok_calls,
    count(*) FILTER (WHERE NOT ok) AS failed_attempts,
    count(*) FILTER (WHERE is_retry) AS retries,
    sum(input_tokens) AS input_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(billed_input_tokens) AS billed_input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    sum(billed_cost_usd) AS billed_cost_usd,
    sum(would_have_cost_usd) AS would_have_cost_usd,
    COALESCE(sum(cost_usd) FILTER (WHERE is_retry), 0)::numeric(18, 6) AS retry_cost_usd,
    COALESCE(sum(cost_usd) FILTER (WHERE NOT answered), 0)::numeric(18, 6) AS wasted_cost_usd"""

CALL_COSTS = """
CREATE VIEW call_costs AS
SELECT
    c.id AS llm_call_id,
    (c.started_at AT TIME ZONE 'UTC')::date AS day,
    c.started_at,
    c.run_id,
    r.set_id,
    s.name AS set_name,
    r.kind AS run_kind,
    c.batch_id,
    b.priority AS batch_priority,
    c.model,
    c.mode,
    c.attempt,
    c.status,
    c.status = 'ok' AS ok,
    -- A retry is any attempt at a batch after its first one (a tenacity retry or a later claim).
    EXISTS (
        SELECT 1 FROM llm_calls p
        WHERE p.batch_id = c.batch_id AND (p.started_at, p.id) < (c.started_at, c.id)
    ) AS is_retry,
    -- Answered: some result row came from this attempt; the cost of the others is wasted.
    EXISTS (SELECT 1 FROM results res WHERE res.llm_call_id = c.id) AS answered,
    c.http_status,
    c.error_type,
    c.request_id,
    c.estimated_input_tokens,
    COALESCE(c.input_tokens, 0) AS input_tokens,
    COALESCE(c.cache_creation_input_tokens, 0) + COALESCE(c.cache_creation_1h_input_tokens, 0)
        AS cache_write_tokens,
    COALESCE(c.cache_read_input_tokens, 0) AS cache_read_tokens,
    COALESCE(c.billed_input_tokens, 0) AS billed_input_tokens,
    COALESCE(c.output_tokens, 0) AS output_tokens,
    c.utilization,
    c.cost_usd,
    (CASE WHEN c.would_have_cost THEN 0 ELSE c.cost_usd END)::numeric(18, 6) AS billed_cost_usd,
    (CASE WHEN c.would_have_cost THEN c.cost_usd ELSE 0 END)::numeric(18, 6) AS would_have_cost_usd,
    c.would_have_cost,
    c.price_version
FROM llm_calls c
JOIN runs r ON r.id = c.run_id
JOIN issue_sets s ON s.id = r.set_id
JOIN batches b ON b.id = c.batch_id
"""

COST_BY_DAY = f"""
CREATE VIEW cost_by_day AS
SELECT day, count(DISTINCT run_id) AS runs, {CALL_MEASURES}
FROM call_costs GROUP BY day
"""

COST_BY_MODEL = f"""
CREATE VIEW cost_by_model AS
SELECT day, model, {CALL_MEASURES}
FROM call_costs GROUP BY day, model
"""

COST_BY_SET = f"""
CREATE VIEW cost_by_set AS
SELECT day, set_id, set_name, count(DISTINCT run_id) AS runs, {CALL_MEASURES}
FROM call_costs GROUP BY day, set_id, set_name
"""

# One row per run, calls or not; a run is dated by the day it was planned.
COST_BY_RUN = f"""
CREATE VIEW cost_by_run AS
WITH calls AS (
    SELECT run_id, {CALL_MEASURES},
        round(min(utilization)::numeric, 6) AS utilization_min,
        round((percentile_cont(0.5) WITHIN GROUP (ORDER BY utilization))::numeric, 6) AS utilization_median,
        round((percentile_cont(0.95) WITHIN GROUP (ORDER BY utilization))::numeric, 6) AS utilization_p95,
        round(max(utilization)::numeric, 6) AS utilization_max,
        min(started_at) AS first_call_at
    FROM call_costs GROUP BY run_id
), issues AS (
    SELECT run_id,
        count(*) AS issues,
        count(*) FILTER (WHERE status = 'answered') AS issues_answered,
        count(*) FILTER (WHERE status = 'failed') AS issues_failed,
        count(*) FILTER (WHERE status = 'oversize') AS issues_oversize,
        count(*) FILTER (WHERE status = 'deferred') AS issues_deferred,
        count(*) FILTER (WHERE status = 'pending') AS issues_pending
    FROM run_issues GROUP BY run_id
), batch_counts AS (
    SELECT run_id,
        count(*) AS batches,
        count(*) FILTER (WHERE status = 'succeeded') AS batches_succeeded,
        count(*) FILTER (WHERE status = 'failed') AS batches_failed,
        count(*) FILTER (WHERE status = 'split') AS batches_split,
        count(*) FILTER (WHERE status IN ('queued', 'running')) AS batches_open
    FROM batches GROUP BY run_id
)
SELECT
    r.id AS run_id,
    (r.created_at AT TIME ZONE 'UTC')::date AS day,
    r.set_id,
    s.name AS set_name,
    r.kind,
    r.mode,
    r.model,
    r.status,
    r.created_at,
    r.finished_at,
    r.spend_cap_usd,
    COALESCE(i.issues, 0) AS issues,
    COALESCE(i.issues_answered, 0) AS issues_answered,
    COALESCE(i.issues_failed, 0) AS issues_failed,
    COALESCE(i.issues_oversize, 0) AS issues_oversize,
    COALESCE(i.issues_deferred, 0) AS issues_deferred,
    COALESCE(i.issues_pending, 0) AS issues_pending,
    COALESCE(bc.batches, 0) AS batches,
    COALESCE(bc.batches_succeeded, 0) AS batches_succeeded,
    COALESCE(bc.batches_failed, 0) AS batches_failed,
    COALESCE(bc.batches_split, 0) AS batches_split,
    COALESCE(bc.batches_open, 0) AS batches_open,
    COALESCE(c.attempts, 0) AS attempts,
    COALESCE(c.ok_calls, 0) AS ok_calls,
    COALESCE(c.failed_attempts, 0) AS failed_attempts,
    COALESCE(c.retries, 0) AS retries,
    COALESCE(c.input_tokens, 0) AS input_tokens,
    COALESCE(c.cache_write_tokens, 0) AS cache_write_tokens,
    COALESCE(c.cache_read_tokens, 0) AS cache_read_tokens,
    COALESCE(c.billed_input_tokens, 0) AS billed_input_tokens,
    COALESCE(c.output_tokens, 0) AS output_tokens,
    COALESCE(c.cost_usd, 0)::numeric(18, 6) AS cost_usd,
    COALESCE(c.billed_cost_usd, 0)::numeric(18, 6) AS billed_cost_usd,
    COALESCE(c.would_have_cost_usd, 0)::numeric(18, 6) AS would_have_cost_usd,
    COALESCE(c.retry_cost_usd, 0)::numeric(18, 6) AS retry_cost_usd,
    COALESCE(c.wasted_cost_usd, 0)::numeric(18, 6) AS wasted_cost_usd,
    c.utilization_min,
    c.utilization_median,
    c.utilization_p95,
    c.utilization_max,
    c.first_call_at
FROM runs r
JOIN issue_sets s ON s.id = r.set_id
LEFT JOIN calls c ON c.run_id = r.id
LEFT JOIN issues i ON i.run_id = r.id
LEFT JOIN batch_counts bc ON bc.run_id = r.id
"""

# One row per (attempt, issue of its batch). The windows are partitioned by the call and by columns
# that depend on it alone (day, run), which changes nothing but lets a filter on day or run reach
# inside them. Weights are the planner's estimated input tokens (at least 1, so no share is undefined).
ISSUE_COSTS = """
CREATE VIEW issue_costs AS
WITH members AS (
    SELECT
        c.id AS llm_call_id,
        (c.started_at AT TIME ZONE 'UTC')::date AS day,
        c.run_id,
        c.batch_id,
        c.model,
        c.status,
        c.status = 'ok' AS ok,
        c.would_have_cost,
        bi.issue_id,
        ri.priority,
        GREATEST(ri.input_tokens_est, 1)::numeric AS weight,
        (c.cost_usd * 1000000)::numeric AS call_micro,
        COALESCE(c.billed_input_tokens, 0)::numeric AS call_input,
        COALESCE(c.output_tokens, 0)::numeric AS call_output
    FROM llm_calls c
    JOIN batch_issues bi ON bi.batch_id = c.batch_id
    JOIN run_issues ri ON ri.run_id = c.run_id AND ri.issue_id = bi.issue_id
), floors AS (
    SELECT m.*,
        div(call_micro * weight, sum(weight) OVER w) AS micro_floor,
        mod(call_micro * weight, sum(weight) OVER w) AS micro_rem,
        div(call_input * weight, sum(weight) OVER w) AS input_floor,
        mod(call_input * weight, sum(weight) OVER w) AS input_rem,
        div(call_output * weight, sum(weight) OVER w) AS output_floor,
        mod(call_output * weight, sum(weight) OVER w) AS output_rem
    FROM members m
    WINDOW w AS (PARTITION BY llm_call_id, day, run_id)
), ranked AS (
    SELECT f.*,
        call_micro - sum(micro_floor) OVER w AS micro_left,
        call_input - sum(input_floor) OVER w AS input_left,
        call_output - sum(output_floor) OVER w AS output_left,
        row_number() OVER (PARTITION BY llm_call_id, day, run_id ORDER BY micro_rem DESC, issue_id)
            AS micro_rank,
        row_number() OVER (PARTITION BY llm_call_id, day, run_id ORDER BY input_rem DESC, issue_id)
            AS input_rank,
        row_number() OVER (PARTITION BY llm_call_id, day, run_id ORDER BY output_rem DESC, issue_id)
            AS output_rank
    FROM floors f
    WINDOW w AS (PARTITION BY llm_call_id, day, run_id)
), shares AS (
    SELECT ranked.*,
        micro_floor + CASE WHEN micro_rank <= micro_left THEN 1 ELSE 0 END AS cost_micro
    FROM ranked
)
SELECT
    llm_call_id,
    day,
    run_id,
    batch_id,
    issue_id,
    priority,
    model,
    status,
    ok,
    weight::bigint AS weight,
    (input_floor + CASE WHEN input_rank <= input_left THEN 1 ELSE 0 END)::bigint AS billed_input_tokens,
    (output_floor + CASE WHEN output_rank <= output_left THEN 1 ELSE 0 END)::bigint AS output_tokens,
    cost_micro::bigint AS cost_micro_usd,
    (cost_micro / 1000000)::numeric(18, 6) AS cost_usd,
    (CASE WHEN would_have_cost THEN 0 ELSE cost_micro / 1000000 END)::numeric(18, 6) AS billed_cost_usd,
    (CASE WHEN would_have_cost THEN cost_micro / 1000000 ELSE 0 END)::numeric(18, 6) AS would_have_cost_usd
FROM shares
"""

ISSUE_MEASURES = """
    sum(billed_input_tokens)::bigint AS billed_input_tokens,
    sum(output_tokens)::bigint AS output_tokens,
    sum(cost_usd) AS cost_usd,
    sum(billed_cost_usd) AS billed_cost_usd,
    sum(would_have_cost_usd) AS would_have_cost_usd"""

COST_BY_ISSUE = f"""
CREATE VIEW cost_by_issue AS
SELECT ic.run_id, ic.issue_id, i.external_id, ic.priority, ri.status,
    count(*) AS attempts,
    count(*) FILTER (WHERE ic.ok) AS ok_calls,
    count(*) FILTER (WHERE NOT ic.ok) AS failed_attempts,
    {ISSUE_MEASURES}
FROM issue_costs ic
JOIN issues i ON i.id = ic.issue_id
JOIN run_issues ri ON ri.run_id = ic.run_id AND ri.issue_id = ic.issue_id
GROUP BY ic.run_id, ic.issue_id, i.external_id, ic.priority, ri.status
"""

# calls counts the attempts whose batch held issues of the priority; a mixed batch counts in each.
COST_BY_PRIORITY = f"""
CREATE VIEW cost_by_priority AS
SELECT day, priority,
    count(DISTINCT (run_id, issue_id)) AS issues,
    count(DISTINCT llm_call_id) AS calls,
    count(DISTINCT llm_call_id) FILTER (WHERE NOT ok) AS failed_calls,
    {ISSUE_MEASURES}
FROM issue_costs GROUP BY day, priority
"""

ATTEMPTS_BY_OUTCOME = """
CREATE VIEW attempts_by_outcome AS
SELECT day, run_id, model, status, http_status, error_type,
    count(*) AS attempts,
    count(*) FILTER (WHERE is_retry) AS retries,
    count(DISTINCT batch_id) AS batches,
    sum(cost_usd) AS cost_usd,
    COALESCE(sum(cost_usd) FILTER (WHERE NOT answered), 0)::numeric(18, 6) AS wasted_cost_usd
FROM call_costs GROUP BY day, run_id, model, status, http_status, error_type
"""

# Calls that got an answer: the estimate the guard admitted them on, against what the API billed.
GUARD_HONESTY = """
CREATE VIEW guard_honesty AS
SELECT
    c.id AS llm_call_id,
    (c.started_at AT TIME ZONE 'UTC')::date AS day,
    c.run_id,
    c.batch_id,
    c.model,
    r.calibration,
    c.estimated_input_tokens,
    c.counted_input_tokens,
    c.billed_input_tokens,
    c.billed_input_tokens - c.estimated_input_tokens AS underestimate_tokens,
    round(c.billed_input_tokens::numeric / NULLIF(c.estimated_input_tokens, 0), 4) AS billed_to_estimated,
    c.max_tokens,
    c.context_window,
    floor(c.context_window * r.safe_utilization)::integer AS guard_limit,
    c.billed_input_tokens + c.max_tokens AS billed_request_tokens,
    c.utilization,
    c.billed_input_tokens + c.max_tokens > floor(c.context_window * r.safe_utilization) AS over_guard
FROM llm_calls c
JOIN runs r ON r.id = c.run_id
WHERE c.billed_input_tokens IS NOT NULL
"""

# suggested_calibration: billed tokens per cl100k token, what the catalog's factor should be.
CALIBRATION_BY_MODEL = """
CREATE VIEW calibration_by_model AS
SELECT
    model,
    count(*) AS calls,
    sum(estimated_input_tokens) AS estimated_input_tokens,
    sum(billed_input_tokens) AS billed_input_tokens,
    round(sum(billed_input_tokens)::numeric / NULLIF(sum(estimated_input_tokens), 0), 4)
        AS billed_to_estimated,
    min(billed_to_estimated) AS ratio_min,
    round(percentile_cont(0.95) WITHIN GROUP (ORDER BY billed_to_estimated)::numeric, 4) AS ratio_p95,
    max(billed_to_estimated) AS ratio_max,
    round(
        sum(billed_input_tokens)::numeric
        / NULLIF(sum(estimated_input_tokens / NULLIF(calibration, 0))::numeric, 0),
        4
    ) AS suggested_calibration,
    count(*) FILTER (WHERE underestimate_tokens > 0) AS underestimated_calls,
    count(*) FILTER (WHERE over_guard) AS over_guard_calls
FROM guard_honesty GROUP BY model
"""

VIEWS = (
    ("call_costs", CALL_COSTS),
    ("cost_by_day", COST_BY_DAY),
    ("cost_by_model", COST_BY_MODEL),
    ("cost_by_set", COST_BY_SET),
    ("cost_by_run", COST_BY_RUN),
    ("issue_costs", ISSUE_COSTS),
    ("cost_by_issue", COST_BY_ISSUE),
    ("cost_by_priority", COST_BY_PRIORITY),
    ("attempts_by_outcome", ATTEMPTS_BY_OUTCOME),
    ("guard_honesty", GUARD_HONESTY),
    ("calibration_by_model", CALIBRATION_BY_MODEL),
)


def upgrade() -> None:
    # "Was this attempt's answer kept?" looks results up by call.
    op.create_index("results_llm_call_idx", "results", ["llm_call_id"], unique=False)
    # Stand-in and replayed calls were priced at list price but never billed.
    op.execute("UPDATE llm_calls SET would_have_cost = true WHERE mode IN ('standin', 'replay')")
    for _, sql in VIEWS:
        op.execute(sql)


def downgrade() -> None:
    for name, _ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index("results_llm_call_idx", table_name="results")
