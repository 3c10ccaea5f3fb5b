"""The stand-in's request log (``GET /_standin/log``): one entry per API request, what it asked and got.

Tests and benches read it to see what reached the "API": issue ids, counted and billed tokens,
stop reason, status, the faults applied and when the reply went out.
"""

from __future__ import annotations

import threading
import time

from budgetq.devtools.standin.http import ApiFailure, new_id
from budgetq.devtools.standin.mapping import JSONDict

_NULLS = ("responded_at", "model", "max_tokens", "stream", "counted_input_tokens", "stop_reason",
          "error_type", "fault", "retry_after")  # fmt: skip
_ZEROS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


class RequestLog:
    """The entries in arrival order; an entry is filled in while its request is served."""

    def __init__(self) -> None:
        self._entries: list[JSONDict] = []
        self._lock = threading.Lock()

    def open(self, path: str) -> JSONDict:
        """A new entry for a request to ``path``, with a fresh request id."""
        with self._lock:
            entry: JSONDict = {
                "seq": len(self._entries) + 1, "request_id": new_id("req_"), "path": path, "status": None,
                "completed": False, "received_at": time.time(),
            }  # fmt: skip
            entry |= dict.fromkeys(_NULLS) | dict.fromkeys(_ZEROS, 0) | {"faults": [], "issue_ids": []}
            entry["stream"] = False
            self._entries.append(entry)
            return entry

    @staticmethod
    def failed(entry: JSONDict, fail: ApiFailure) -> None:
        """Note the API error the request got."""
        entry.update(error_type=fail.etype, retry_after=fail.retry_after)
        entry["faults"] += [fail.fault] if fail.fault else []

    def close(self, entry: JSONDict, status: int | None, delay_s: float) -> None:
        """Note the reply's status (None: dropped) and when it goes out, ``delay_s`` from now."""
        with self._lock:
            entry.update(status=status, completed=True, responded_at=time.time() + delay_s)
            entry["fault"] = entry["faults"][0] if entry["faults"] else None

    def entries(self) -> list[JSONDict]:
        """A copy of every entry."""
        with self._lock:
            return [
                dict(entry, issue_ids=list(entry["issue_ids"]), faults=list(entry["faults"]))
                for entry in self._entries
            ]

    def clear(self) -> None:
        """Forget every entry (sequence numbers start again at 1)."""
        with self._lock:
            self._entries.clear()
