"""`budgetq demo` run twice against one kept database: the second run pays for nothing, --fresh pays again.

The real command in this process (its own stand-in, a real worker process), PostgreSQL and Redis of
the tests; each demo makes a new issue set, so only answer reuse can spare the second one's calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.integration.conftest import Budgetq


def test_the_second_demo_reuses_all_3824_answers_and_fresh_pays_again(
    run_budgetq: Budgetq, fresh_database: Callable[[], str], broker_url: str, tmp_path: Any
) -> None:
    # Given a database of its own for the demo
    env = {
        "BUDGETQ_DATABASE_URL": fresh_database(),
        "BUDGETQ_REDIS_URL": broker_url,
        "BUDGETQ_DATA_DIR": str(tmp_path),
        "BUDGETQ_REUSE_MODE": "text",
    }

    def demo(*extra: str) -> dict[str, Any]:
        outcome = run_budgetq("demo", "--json", *extra, **env)
        assert outcome.code == 0, outcome
        summary: dict[str, Any] = json.loads(outcome.stdout.strip().splitlines()[-1])
        return summary

    # When the demo runs twice, then once more with --fresh
    first, second, fresh = demo(), demo(), demo("--fresh")

    # Then the first pays for 3,824 answers, the second makes no call and reuses them all
    assert (first["answered"], first["reused"], first["calls"] > 0) == (3824, 0, True)
    assert (second["answered"], second["reused"], second["results"], second["calls"]) == (0, 3824, 3824, 0)
    assert second["cost_usd"] == "0.000000" and second["status"] == "succeeded"
    # And --fresh pays again for every issue
    assert (fresh["answered"], fresh["reused"]) == (3824, 0)
    assert fresh["calls"] == first["calls"] and float(fresh["cost_usd"]) > 0
