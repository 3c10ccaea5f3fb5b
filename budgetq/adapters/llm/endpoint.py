"""The API key and where it may go: which key a mode uses, and HTTPS anywhere but plain HTTP only to
this machine unless explicitly allowed."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from budgetq.domain.calls import ReplayMode
from budgetq.errors import ConfigurationError


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IPv4/IPv6 literal) names this machine."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str | None, *, sends_key: bool, allow_plain_http: bool) -> None:
    """Refuse to send a real API key over plain HTTP to another host (anyone on the path could read it)."""
    if url is None or not sends_key or allow_plain_http:
        return
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        return
    host = parts.hostname or ""
    if is_loopback(host):
        return
    raise ConfigurationError(
        f"ANTHROPIC_BASE_URL {parts.scheme}://{parts.netloc.split('@')[-1]} is plain HTTP to another host: "
        "the API key would cross the network unencrypted; use https://, or set "
        "BUDGETQ_ALLOW_PLAIN_HTTP_BASE_URL=true if the path is trusted"
    )


def sdk_api_key(mode: ReplayMode, api_key: str | None, base_url: str | None) -> str:
    """The key the SDK client is built with for ``mode``; ConfigurationError says what is missing."""
    if mode is ReplayMode.REPLAY:
        raise ConfigurationError("replay mode makes no network calls; it serves recorded cassettes")
    if mode is ReplayMode.MOCK_TOOLS or (mode is ReplayMode.RECORD and not api_key):
        if not base_url:
            raise ConfigurationError(
                f"{mode.value} mode needs ANTHROPIC_BASE_URL pointing at a running stand-in "
                "(python -m budgetq.devtools.standin)"
                + (", or ANTHROPIC_API_KEY to record the live API" if mode is ReplayMode.RECORD else "")
            )
        return api_key or "standin"
    if not api_key:
        raise ConfigurationError(
            "live mode needs ANTHROPIC_API_KEY; set it, or run against the local stand-in"
        )
    return api_key
