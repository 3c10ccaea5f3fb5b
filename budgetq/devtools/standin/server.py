"""A local stand-in for the subset of Anthropic's Messages API that budgetq uses.

The real ``anthropic`` SDK talks to it (``base_url=standin.url``): ``POST /v1/messages`` (JSON or
``"stream": true`` server-sent events) and ``POST /v1/messages/count_tokens``, with ``usage``,
``request-id`` and ``anthropic-ratelimit-*`` headers, prompt caching, a context window, per-minute
limits and injectable faults (``budgetq.devtools.standin.faults.FaultPlan``). Answers are deterministic: one
``record_diagnoses`` entry per issue of the user message. Tokens are cl100k counts times
``token_ratio``, so a client's estimator is wrong by a known factor.

This module holds the ``StandIn`` (lifecycle, routing, the Messages endpoint, admin endpoints); its
parts are the modules beside it: config, http, requests, messages, answers, log, faults, limits,
and batches (the Message Batches API, whose requests are answered by this same Messages endpoint);
its command line is ``__main__``.

Admin endpoints (not Anthropic's): ``GET /_standin/log``, ``GET /_standin/counts``,
``GET|POST /_standin/faults``, ``POST /_standin/limits``, ``GET|POST /_standin/batches``,
``POST /_standin/reset``, ``GET /_standin/health``.

Run it alone: ``python -m budgetq.devtools.standin --port 8765 [--faults JSON|@file]``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from budgetq.devtools.standin.answers import issues_in
from budgetq.devtools.standin.batches import BatchBehaviour, MessageBatches
from budgetq.devtools.standin.config import StandInConfig
from budgetq.devtools.standin.faults import FaultPlan
from budgetq.devtools.standin.http import ApiFailure, Reply, StandInServer, error_body, new_id
from budgetq.devtools.standin.limits import RateLimits, SlidingWindowLimiter
from budgetq.devtools.standin.log import RequestLog
from budgetq.devtools.standin.mapping import JSONDict
from budgetq.devtools.standin.messages import answer_for, message_body, raise_transport_fault, stream_events
from budgetq.devtools.standin.requests import PromptCache, TokenCounter, parse_request

__all__ = ["BatchBehaviour", "FaultPlan", "RateLimits", "StandIn", "StandInConfig"]


class StandIn:
    """The stand-in server: ``url = StandIn(config).start()`` … ``.stop()``; thread-safe."""

    def __init__(
        self, config: StandInConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or StandInConfig()
        self._clock = clock
        self._tokens = TokenCounter(self.config.token_ratio)
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._faults = self.config.faults
        self._limiter = SlidingWindowLimiter(self.config.limits, clock)
        self._cache = PromptCache(self.config, clock)
        self._log = RequestLog()
        self._calls = 0  # /v1/messages requests since the fault plan was set (for fail_first_n)
        self.batches = MessageBatches(self._send_message, lambda: self.url, self.config.batches, clock)
        self._server: StandInServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is None:
            self._server = StandInServer((self.config.host, self.config.port), self)
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
        return self._log.entries()

    def counts(self) -> JSONDict:
        """How many Messages requests arrived and how many were answered (a 200 with usage, billed even
        if the client is gone when the reply goes out); Message Batch requests included."""
        messages = [e for e in self._log.entries() if e["path"] == "/v1/messages"]
        answered = [e for e in messages if e["status"] == 200 and "stream_overloaded" not in e["faults"]]
        return {"messages_received": len(messages), "messages_answered": len(answered)}

    def set_faults(self, plan: FaultPlan) -> None:
        with self._lock:
            self._faults, self._calls = plan, 0

    def set_limits(self, limits: RateLimits) -> None:
        self._limiter = SlidingWindowLimiter(limits, self._clock)

    def reset(self) -> None:
        with self._lock:
            self._calls = 0
            self._rng = random.Random(self.config.seed)
        self._log.clear()
        self._cache.clear()
        self._limiter.reset()
        self.batches.reset()

    # --- requests --------------------------------------------------------------------------

    def dispatch(self, method: str, path: str, body: bytes, headers: Any) -> Reply:
        if path.startswith("/_standin/"):
            return self._admin(method, path, body)
        if path.startswith("/v1/messages/batches"):
            return self._batches(method, path, body, headers)
        if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            fail = ApiFailure(404, "not_found_error", f"Not found: {method} {path}")
            return Reply(404, error_body(fail, new_id("req_")))
        entry = self._log.open(path)
        try:
            if not (headers.get("x-api-key") or headers.get("authorization")):
                raise ApiFailure(401, "authentication_error", "x-api-key header is required")
            reply = (
                self._count_tokens(body, entry)
                if path.endswith("count_tokens")
                else self._messages(body, entry)
            )
        except ApiFailure as fail:
            reply = Reply(fail.status, error_body(fail, entry["request_id"]))
            self._log.failed(entry, fail)
            if fail.retry_after is not None:
                reply.headers |= {
                    "retry-after": str(fail.retry_after),
                    "retry-after-ms": str(fail.retry_after * 1000),
                }
        reply.headers["request-id"] = entry["request_id"]
        if path == "/v1/messages":
            # An injected 429 reports the input-token limit spent until its retry-after, as the API would.
            injected = reply.status == 429 and "rate_limited" in entry["faults"]
            spent = ("input_tokens", float(entry["retry_after"] or 0)) if injected else (None, 0.0)
            reply.headers |= self._limiter.headers(*spent)
            reply.headers |= self.config.extra_headers
        self._log.close(entry, reply.status, reply.delay_s)
        return reply

    def _batches(self, method: str, path: str, body: bytes, headers: Any) -> Reply:
        request_id = new_id("req_")
        if not (headers.get("x-api-key") or headers.get("authorization")):
            fail = ApiFailure(401, "authentication_error", "x-api-key header is required")
            return Reply(401, error_body(fail, request_id), headers={"request-id": request_id})
        answer = self.batches.handle(method, path, body)
        return Reply(
            answer.status,
            answer.body,
            headers={"request-id": request_id},
            lines=answer.lines,
            delay_s=answer.delay_s,
        )

    def _send_message(self, params: bytes) -> tuple[int, JSONDict]:
        """One request of a Message Batch, answered like a synchronous call (and logged as one)."""
        reply = self.dispatch("POST", "/v1/messages", params, {"x-api-key": "message-batch"})
        if reply.status is None or not isinstance(reply.body, dict):  # a dropped connection
            return 500, {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}
        return reply.status, reply.body

    def _count_tokens(self, body: bytes, entry: JSONDict) -> Reply:
        status = self.config.count_tokens_status
        if status is not None:
            raise ApiFailure(
                status, "not_found_error", f"Not found: POST /v1/messages/count_tokens ({status})"
            )
        req = parse_request(body, counting=True)
        total = self._tokens.count(req).total
        entry.update(
            model=req.model, counted_input_tokens=total, issue_ids=[i for i, _ in issues_in(req.user_text)]
        )
        return Reply(200, {"input_tokens": total})

    def _messages(self, body: bytes, entry: JSONDict) -> Reply:
        req = parse_request(body, counting=False)
        entry.update(model=req.model, max_tokens=req.max_tokens, stream=req.stream)
        issues = issues_in(req.user_text)  # parsed once, for the log and the answer
        entry["issue_ids"] = [i for i, _ in issues]
        count = self._tokens.count(req)
        entry["counted_input_tokens"] = count.total
        with self._lock:
            plan, draw = self._faults, self._faults.draw(self._rng)
            self._calls += 1
            calls = self._calls
        raise_transport_fault(plan, draw, calls, count.total + req.max_tokens, self.config.context_window)
        if draw.transport == "drop":
            entry["faults"].append("drop")
            return Reply(None)
        uncached, creation, read = self._cache.split(count)
        admission = self._limiter.try_admit(uncached + creation, req.max_tokens)
        if not admission.admitted:
            raise ApiFailure(
                429,
                "rate_limit_error",
                f"This request would exceed your organization's rate limit for {admission.exceeded} "
                "per minute. Reduce the prompt length or max_tokens, or try again later.",
                fault=f"rate_limit:{admission.exceeded}",
                retry_after=admission.retry_after,
            )
        self._cache.commit(count)
        answer = answer_for(req, draw, self._tokens, issues)
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
        message = message_body(req, answer, (uncached, creation, read), count.ttl)
        if req.stream:
            return Reply(200, events=stream_events(message, broken), delay_s=delay)
        return Reply(200, message, delay_s=delay)

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        name = path.removeprefix("/_standin/")
        try:
            data = json.loads(body) if body else {}
            result: object
            if method == "GET" and name == "log":
                result = self.log()
            elif method == "GET" and name == "counts":
                result = self.counts()
            elif method == "GET" and name in ("faults", "health"):
                result = self._faults.to_dict() if name == "faults" else {"ok": True}
            elif method == "POST" and name == "faults":
                self.set_faults(FaultPlan.from_dict(data))
                result = self._faults.to_dict()
            elif method == "GET" and name == "batches":
                result = {
                    "behaviour": self.batches.behaviour.to_dict(),
                    "batches": self.batches.summary(),
                    "create_attempts": self.batches.create_attempts,
                }
            elif method == "POST" and name == "batches":
                self.batches.set_behaviour(BatchBehaviour.from_dict(data))
                result = self.batches.behaviour.to_dict()
            elif method == "POST" and name == "limits":
                self.set_limits(RateLimits.from_dict(data))
                result = self._limiter.limits.to_dict()
            elif method == "POST" and name == "reset":
                self.reset()
                result = {"ok": True}
            else:
                return Reply(404, {"error": f"no admin endpoint {method} {path}"})
        except (ValueError, TypeError) as exc:
            return Reply(400, {"error": str(exc)})
        return Reply(200, result)
