"""What the stand-in's Message Batches create reads from its body: the requests, checked as the API
checks them (at most 100,000 requests and 256 MB, unique custom ids matching
``^[a-zA-Z0-9_-]{1,64}$``, no streaming)."""

from __future__ import annotations

import json
import re

MAX_REQUESTS = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def parse_requests(raw: bytes) -> list[tuple[str, bytes]]:
    """(custom_id, params as JSON bytes) of a create body; ValueError says what is wrong."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise ValueError(f"Request body is not valid JSON: {exc}") from None
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_REQUESTS:
        raise ValueError(f"requests: must be a list of 1 to {MAX_REQUESTS} items")
    parsed: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for index, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        params = item.get("params") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise ValueError(f"requests.{index}.custom_id: must match {CUSTOM_ID.pattern}")
        if custom_id in seen:
            raise ValueError(f"requests.{index}.custom_id: {custom_id!r} is not unique in the batch")
        if not isinstance(params, dict) or not {"model", "max_tokens", "messages"} <= params.keys():
            raise ValueError(f"requests.{index}.params: model, max_tokens and messages are required")
        if params.get("stream"):
            raise ValueError(f"requests.{index}.params.stream: streaming is not supported in a batch")
        seen.add(custom_id)
        parsed.append((custom_id, json.dumps(params).encode()))
    return parsed


def custom_ids(raw: bytes) -> tuple[str, ...]:
    """The custom ids a create body carries, as far as it can be read (for the create log)."""
    try:
        requests = json.loads(raw or b"null").get("requests") or []
        return tuple(str(r.get("custom_id")) for r in requests if isinstance(r, dict))
    except (ValueError, AttributeError, TypeError):
        return ()
