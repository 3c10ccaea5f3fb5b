"""Where the API key may go: HTTPS anywhere, plain HTTP only to this machine unless explicitly allowed."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

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
