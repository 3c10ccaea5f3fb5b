"""One HTTP try at one webhook (httpx2, the anthropic SDK's transport, already a dependency): the
status it answered, or why there was none. Never raises, never retries, never logs the URL."""

from __future__ import annotations

from dataclasses import dataclass

import httpx2

from budgetq.adapters.notify.targets import Target


@dataclass(frozen=True)
class Attempt:
    """How one try went: the HTTP status (None: no answer) and an error line without the URL."""

    http_status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        """True when the target accepted the message (any 2xx)."""
        return self.http_status is not None and 200 <= self.http_status < 300


def post(target: Target, body: dict[str, object], idempotency_key: str, timeout_s: float) -> Attempt:
    """POST ``body`` as JSON to ``target`` within ``timeout_s`` (connect to last byte)."""
    headers = {"Idempotency-Key": idempotency_key, "User-Agent": "budgetq-notify"}
    try:
        with httpx2.Client(timeout=httpx2.Timeout(timeout_s), follow_redirects=False) as client:
            reply = client.post(target.url, json=body, headers=headers)
    except httpx2.TimeoutException:
        return Attempt(None, f"no answer within {timeout_s:g} s")
    except httpx2.HTTPError as exc:
        # The class name only: some messages of the transport quote the URL, a secret.
        return Attempt(None, f"could not reach it ({type(exc).__name__})")
    if 200 <= reply.status_code < 300:
        return Attempt(reply.status_code, None)
    return Attempt(reply.status_code, f"answered HTTP {reply.status_code}: {reply.text[:200]!r}")
