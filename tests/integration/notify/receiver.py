"""A webhook receiver for tests: a threaded http.server on 127.0.0.1 that records what it was sent and
answers from a script per path (a status, or a hang of some seconds), then 200."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request: its path, JSON body, the status answered (None: it hung past the client's patience)."""

    path: str
    body: dict[str, Any]
    status: int | None
    at: float


@dataclass
class Receiver:
    """The server, its log and its scripts: ``script[path]`` is a list of replies used up in order per
    path, each an int status or ("hang", seconds); past its end every request gets 200."""

    server: ThreadingHTTPServer | None = None
    log: list[Received] = field(default_factory=list)
    script: dict[str, list[int | tuple[str, float]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        """The URL of ``path`` on this receiver."""
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def answered(self, path: str, status: int = 200) -> list[Received]:
        """The requests to ``path`` that got ``status``."""
        with self.lock:
            return [r for r in self.log if r.path == path and r.status == status]

    def requests(self, path: str) -> list[Received]:
        """Every request to ``path``."""
        with self.lock:
            return [r for r in self.log if r.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            with receiver.lock:
                steps = receiver.script.get(self.path, [])
                step: int | tuple[str, float] = steps.pop(0) if steps else 200
            if isinstance(step, tuple):
                time.sleep(step[1])
                with receiver.lock:
                    receiver.log.append(Received(self.path, body, None, time.time()))
                return  # the client gave up long ago; nothing is answered
            with receiver.lock:
                receiver.log.append(Received(self.path, body, step, time.time()))
            self.send_response(step)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if step == 200 else b"nope")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            pass

    return Handler


def serve() -> Iterator[Receiver]:
    """Start a receiver on a free port; stopped when the generator is closed."""
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
