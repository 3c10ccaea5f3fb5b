"""The API key never goes over plain HTTP to a host that is not this machine (issue 17, point 16)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from budgetq.adapters.llm.client import BudgetAwareLLMClient, ReplayMode
from budgetq.errors import ConfigurationError
from budgetq.settings import Settings

KEY = SecretStr("sk-ant-test-0000")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com",
        "http://10.0.0.7:8765",
        "HTTP://gateway.internal/v1",
        "http://[2001:db8::1]:80",
    ],
)
def test_a_key_is_not_sent_over_plain_http_to_another_host(url: str) -> None:
    # Given a real API key and a plain-HTTP base URL on another host
    client = BudgetAwareLLMClient(settings=Settings(anthropic_api_key=KEY, anthropic_base_url=url))

    # When the SDK client is built
    # Then it refuses, naming the URL and the setting that allows it
    with pytest.raises(ConfigurationError, match="BUDGETQ_ALLOW_PLAIN_HTTP_BASE_URL") as refused:
        _ = client.client
    assert "sk-ant-test-0000" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com",
        "http://127.0.0.1:8765",
        "http://localhost:8765",
        "http://[::1]:8765",
        "http://127.8.9.10",
    ],
)
def test_https_or_this_machine_is_accepted(url: str) -> None:
    # Given a key and an HTTPS URL, or a plain-HTTP one on a loopback address
    client = BudgetAwareLLMClient(settings=Settings(anthropic_api_key=KEY, anthropic_base_url=url))

    # Then the SDK client is built
    assert client.client is not None


def test_plain_http_to_another_host_is_accepted_when_allowed_or_without_a_key() -> None:
    # Given the explicit setting, or no key at all (the stand-in on another container gets no secret)
    allowed = Settings(
        anthropic_api_key=KEY, anthropic_base_url="http://standin:8765", allow_plain_http_base_url=True
    )
    keyless = Settings(anthropic_base_url="http://standin:8765")

    # Then both build their SDK client
    assert BudgetAwareLLMClient(settings=allowed).client is not None
    assert BudgetAwareLLMClient(mode=ReplayMode.MOCK_TOOLS, settings=keyless).client is not None
