"""The notification targets of ``BUDGETQ_NOTIFY_URLS``: each URL's kind, a digest that names it in the
database, and a redacted form for logs. The URL itself is a secret and stays in this object."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import SecretStr

from budgetq.domain.notifications import TargetKind
from budgetq.errors import ConfigurationError

SLACK_HOSTS = ("hooks.slack.com",)


@dataclass(frozen=True)
class Target:
    """One webhook: where to post (never printed: ``repr`` leaves it out), as what, and its names."""

    url: str = field(repr=False)
    kind: TargetKind
    digest: str  # stored in notification_deliveries.target
    redacted: str  # logged: kind, scheme and host only


def _target(text: str, position: int, total: int) -> Target:
    kind: TargetKind | None = None
    url = text
    for prefix, named in (("slack+", TargetKind.SLACK), ("json+", TargetKind.JSON)):
        if text.startswith(prefix):
            kind, url = named, text[len(prefix) :]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"BUDGETQ_NOTIFY_URLS: target {position} of {total} is not an http(s) URL; write e.g. "
            "https://hooks.slack.com/services/..., slack+https://host/path or json+https://host/path"
        )
    if kind is None:
        kind = TargetKind.SLACK if parts.hostname in SLACK_HOSTS else TargetKind.JSON
    port = f":{parts.port}" if parts.port else ""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Target(url, kind, digest, f"{kind.value} {parts.scheme}://{parts.hostname}{port}/… ({digest[:8]})")


def parse_targets(urls: SecretStr | None) -> tuple[Target, ...]:
    """The targets of the setting (comma- or space-separated); none when unset."""
    if urls is None:
        return ()
    texts = urls.get_secret_value().replace(",", " ").split()
    return tuple(_target(t, n, len(texts)) for n, t in enumerate(texts, start=1))
