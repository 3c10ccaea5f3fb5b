"""The stand-in's HTTP side: a ``Reply``, API error replies, and the threaded server writing them.

A reply is a JSON body, a server-sent event stream, a JSON-lines body (Message Batch results) or
nothing at all (``status=None``: the connection is dropped). What to answer is the dispatcher's
business (``budgetq.devtools.standin.StandIn.dispatch``); this module only puts it on the wire.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from budgetq.devtools.standin.batch_requests import MAX_BATCH_BYTES
from budgetq.devtools.standin.mapping import JSONDict

MAX_BODY_BYTES = 32 * 1024 * 1024  # the API's request size limit


class ApiFailure(Exception):
    """An API error reply (status, error type, message and extra headers), raised inside the stand-in
    and sent as Anthropic's error body; budgetq code never sees it, only the SDK's translation."""

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
class Reply:
    """What to send back: status (None: drop the connection), body or events or lines, headers, delay."""

    status: int | None
    body: object = None
    events: list[tuple[str, JSONDict]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    lines: tuple[JSONDict, ...] | None = None  # a JSONL body (Message Batch results)


class Dispatcher(Protocol):
    """Answers one request (the stand-in itself)."""

    def dispatch(self, method: str, path: str, body: bytes, headers: Any) -> Reply:
        """The reply to ``method path`` with this body and these headers."""
        ...


def invalid_request(message: str) -> ApiFailure:
    """A 400 ``invalid_request_error`` with this message."""
    return ApiFailure(400, "invalid_request_error", message)


def new_id(prefix: str) -> str:
    """An id shaped like the API's (``msg_01…``, ``req_01…``, ``toolu_01…``)."""
    return prefix + "01" + uuid.uuid4().hex[:22]


def error_body(fail: ApiFailure, request_id: str) -> JSONDict:
    """The API's JSON error body for ``fail``."""
    error: JSONDict = {"type": fail.etype, "message": fail.message}
    if fail.details:
        error["details"] = fail.details
    return {"type": "error", "error": error, "request_id": request_id}


class StandInServer(ThreadingHTTPServer):
    """A threaded HTTP server handing every request to ``dispatcher``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher) -> None:
        super().__init__(address, _Handler)
        self.dispatcher = dispatcher

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Report a handler's error, unless a client merely hung up."""
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hanging up are normal here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: StandInServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Silent: the stand-in keeps its own request log."""

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        batches = self.path.startswith("/v1/messages/batches")
        if length > (MAX_BATCH_BYTES if batches else MAX_BODY_BYTES):
            self._send(
                Reply(
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
            reply = self.server.dispatcher.dispatch(self.command, self.path.split("?")[0], body, self.headers)
        except Exception as exc:  # a stand-in bug must look like an API error, not a dropped connection
            fail = ApiFailure(500, "api_error", f"stand-in internal error: {exc!r}")
            reply = Reply(500, error_body(fail, new_id("req_")))
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

    def _send(self, reply: Reply) -> None:
        assert reply.status is not None
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.lines is not None:
            data = b"".join(json.dumps(line).encode() + b"\n" for line in reply.lines)
            self.send_header("content-type", "application/binary")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
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
