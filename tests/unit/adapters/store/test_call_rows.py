"""An attempt's row is opened and closed by statements built once: every column the row's values name
must have its placeholder, or the value would be dropped without a word."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from budgetq.adapters.store import calls
from budgetq.adapters.store.batches import Claim
from budgetq.domain.calls import Attempt
from budgetq.domain.statuses import CallOutcome


def _claim() -> Claim:
    return Claim(1, 2, uuid.uuid4(), 10, 4096, "claude-sonnet-4-6", "live", 200_000, 0.75, 1.35, 0, ())


def test_every_column_an_attempt_writes_has_a_placeholder_in_the_built_statements() -> None:
    now = dt.datetime.now(dt.UTC)
    attempt = Attempt(number=1, outcome=CallOutcome.OK, started_at=now, finished_at=now)
    closing = set(calls._attempt_columns(_claim(), attempt)) | {"unknown_usd"}
    opening = set(calls._claim_columns(_claim(), 100, None, "host"))
    assert {f"v_{k}" for k in closing} <= set(calls._CLOSE_ATTEMPT.compile().params)
    assert {f"v_{k}" for k in opening} <= set(calls._OPEN_ATTEMPT.compile().params)
    assert calls._bound({"cost_usd": Decimal(1)}) == {"v_cost_usd": Decimal(1)}
