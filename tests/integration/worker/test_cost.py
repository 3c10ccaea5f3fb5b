"""Prompt caching and pricing as data: repeated batches pay the cache-read price, and the cost kept in
every llm_calls row is the price table applied to the row's own usage, to the micro-dollar."""

from __future__ import annotations

from decimal import Decimal
from itertools import islice
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from budgetq.adapters.llm.client import BudgetAwareLLMClient, CallRequest, ReplayMode
from budgetq.adapters.store.engine import transaction
from budgetq.devtools.scenario import seed_issues
from budgetq.devtools.standin.server import StandIn
from budgetq.domain.answers import PromptIssue
from budgetq.domain.catalog import get_model, prices_on
from budgetq.domain.model_spec import Prices
from budgetq.domain.pricing import Usage, cost_usd
from budgetq.domain.prompt import build_prompt
from budgetq.settings import Settings
from tests.integration.worker.inline import make_set, plan_and_drain

pytestmark = pytest.mark.integration


def _prices(model: str, version: str) -> Prices:
    return next(p for p in get_model(model).prices if p.version == version)


def _usage(row: Any) -> Usage:
    return Usage(
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cache_creation_5m=row.cache_creation_input_tokens,
        cache_creation_1h=row.cache_creation_1h_input_tokens,
        cache_read=row.cache_read_input_tokens,
        batch=row.service_tier == "batch",
    )


def test_repeated_batches_pay_the_cache_read_price_and_each_row_costs_what_the_table_says(
    sessions: sessionmaker[Session], test_settings: Settings, standin: StandIn
) -> None:
    # Given 40 issues in 4 batches, sent one after another with the system prompt marked for caching
    set_id = make_set(sessions, [i.text for i in islice(seed_issues(), 40)])
    settings = test_settings.model_copy(update={"max_issues_per_call": 10})

    # When the run is processed
    planned, _ = plan_and_drain(sessions, settings, set_id)
    assert planned.run_id is not None
    with transaction(sessions) as session:
        rows = session.execute(
            text("SELECT * FROM llm_calls WHERE run_id = :run AND status = 'ok' ORDER BY id"),
            {"run": planned.run_id},
        ).all()

    # Then the first call wrote the shared prefix to the cache and every later call read it
    assert len(rows) == 4
    first, later = rows[0], rows[1:]
    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert all(r.cache_read_input_tokens == first.cache_creation_input_tokens for r in later)
    assert all(r.cache_creation_input_tokens == 0 for r in later)
    # And a cache read costs less than the same tokens as uncached input would
    for r in later:
        prices = _prices(r.model, r.price_version)
        uncached = Usage(r.input_tokens + r.cache_read_input_tokens, r.output_tokens)
        assert r.cost_usd < cost_usd(uncached, prices)
    # And every row's Numeric cost is the price table applied to its usage, to the micro-dollar
    for r in rows:
        assert isinstance(r.cost_usd, Decimal)
        assert r.cost_usd == cost_usd(_usage(r), _prices(r.model, r.price_version)), r


def test_a_one_hour_cache_write_and_its_read_are_priced_at_their_own_rates(standin: StandIn) -> None:
    # Given a request whose system prompt is cached for one hour
    model = "claude-haiku-4-5"
    issues = [PromptIssue(7000 + i, 5, t.text) for i, t in enumerate(islice(seed_issues(), 3))]
    prompt = build_prompt(issues, 1.35)
    request = CallRequest(
        model=model,
        system=prompt.system,
        user=prompt.user,
        max_tokens=2_000,
        estimated_input_tokens=prompt.estimated_input_tokens,
        tools=(prompt.tool,),
        tool_choice=prompt.tool_choice,
        cache_ttl="1h",
    )
    client = BudgetAwareLLMClient(
        mode=ReplayMode.MOCK_TOOLS, model=model, settings=Settings(), base_url=standin.url
    )

    # When it is sent twice
    write, read = client.send(request), client.send(request)

    # Then the first pays the 1-hour write rate (2x input) and the second the read rate, as the table says
    assert write.usage.cache_creation_1h > 0 and write.usage.cache_creation_5m == 0
    assert read.usage.cache_read == write.usage.cache_creation_1h
    prices = prices_on(get_model(model), write.attempts[-1].started_at.date())
    assert prices.cache_write_1h == 2 * prices.input and prices.cache_read == prices.input / 10
    assert write.cost_usd == cost_usd(write.usage, prices)
    assert read.cost_usd == cost_usd(read.usage, prices)
    assert read.cost_usd < write.cost_usd
