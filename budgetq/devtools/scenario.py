"""The seed's scenario as data: 3,824 warehouse data-quality issues of about 40 tokens each.

2,231 at priority 10, 1,304 at priority 5 and 289 at priority 1, as in the user's design document;
texts are varied and deterministic (a seeded generator), so every demo run is comparable.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

SEED_COUNTS: tuple[tuple[int, int], ...] = ((10, 2231), (5, 1304), (1, 289))

_TABLES = (
    "orders",
    "order_items",
    "customers",
    "payments",
    "shipments",
    "invoices",
    "products",
    "inventory_snapshots",
    "web_sessions",
    "marketing_touches",
    "subscriptions",
    "refunds",
    "ledger_entries",
    "fx_rates",
    "suppliers",
)
_COLUMNS = (
    "customer_id",
    "order_id",
    "amount_usd",
    "created_at",
    "updated_at",
    "email",
    "country_code",
    "sku",
    "quantity",
    "status",
    "currency",
    "tax_rate",
    "postal_code",
    "shipped_at",
    "discount_pct",
    "unit_price",
)
_SOURCES = ("Fivetran sync", "dbt model", "Airflow DAG", "Kafka connector", "nightly CSV drop", "CDC stream")
_TEMPLATES = (
    "{pct}% of rows in {schema}.{table} have NULL {column} since the {source} run on {day}; "
    "downstream revenue dashboards show gaps for {n} accounts.",
    "{n} duplicate {column} values in {schema}.{table} after the {source} backfill on {day}; "
    "joins to {other} now fan out and double-count totals.",
    "{schema}.{table}.{column} changed type from integer to varchar in the {source} on {day}; "
    "{n} rows fail the cast in the {other} model.",
    "{n} rows in {schema}.{table} reference a {column} missing from {other}; the foreign key check "
    "has failed every night since {day}.",
    "{column} in {schema}.{table} holds {n} values outside the allowed range after the {source} "
    "deploy on {day}; max observed is {pct}x the 99th percentile.",
    "{schema}.{table} was last loaded {n} hours ago; the {source} freshness SLA is 6 hours and "
    "{other} consumers read stale {column} values.",
    "Row count of {schema}.{table} dropped {pct}% day over day on {day} while {other} stayed flat; "
    "the {source} may have skipped partitions.",
    "{n} {column} values in {schema}.{table} do not match the expected format (ISO 8601 / E.164) "
    "since the {source} change on {day}.",
    "Sum of {column} in {schema}.{table} differs from {other} by {pct}% for {day}; the {source} "
    "reconciliation job flagged {n} mismatched keys.",
)


@dataclass(frozen=True)
class ScenarioIssue:
    """One generated issue."""

    external_id: str
    priority: int
    text: str


def seed_issues(seed: int = 3824) -> Iterator[ScenarioIssue]:
    """The 3,824 issues of the seed's scenario, priorities interleaved as a real detector emits them."""
    rng = random.Random(seed)
    priorities = [p for p, n in SEED_COUNTS for _ in range(n)]
    rng.shuffle(priorities)
    for index, priority in enumerate(priorities):
        table, other = rng.sample(_TABLES, 2)
        text = rng.choice(_TEMPLATES).format(
            schema=rng.choice(("analytics", "raw", "staging", "marts")),
            table=table,
            other=other,
            column=rng.choice(_COLUMNS),
            source=rng.choice(_SOURCES),
            day=f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}",
            n=rng.randint(3, 250_000),
            pct=rng.randint(2, 97),
        )
        yield ScenarioIssue(external_id=f"dq-{index + 1:05d}", priority=priority, text=text)
