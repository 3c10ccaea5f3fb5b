"""The cacheable prompt prefix of a request, as the rate limiter tracks it: its name and its lifetime.

Cache reads do not count against the API's input limit, so the limiter notes each cached prefix's
size in Redis for as long as the API keeps it, and reserves only the rest of a request's estimate.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def prefix_key(request: Any) -> str | None:
    """A name for the request's cacheable prefix (model, tools, system prompt), or None if not cached."""
    if getattr(request, "cache_ttl", None) is None:
        return None
    tools = json.dumps([dict(t) for t in request.tools], sort_keys=True, default=str)
    material = "\x00".join((request.model, str(request.cache_ttl), tools, request.system))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def cache_ttl_seconds(ttl: str | None) -> float:
    """How long the API keeps a prefix after its last use: 5 minutes, or an hour for ``1h``."""
    return 3600.0 if ttl == "1h" else 300.0
