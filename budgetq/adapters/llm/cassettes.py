"""Cassettes: recorded Messages API exchanges, for the record and replay modes.

A cassette is one JSON file per distinct request, named by ``cassette_key``: the SHA-256 of the
endpoint and the request's parameters as canonical JSON (sorted keys, no whitespace), so the same
batch sent again finds its cassette whatever the host, key or time. It holds every interaction
recorded for that request, in order::

    {"version": 1, "key": "<sha256>", "endpoint": "messages", "request": {...the parameters...},
     "interactions": [
        {"kind": "error", "status": 529, "error_type": "overloaded_error", "error_code": null,
         "message": "Overloaded", "request_id": "req_...", "retry_after": null},
        {"kind": "message", "request_id": "req_...", "message": {...the Messages API response...}},
        {"kind": "count", "input_tokens": 1234}
     ]}

Replay serves a request's interactions in recorded order (per process) and repeats the last one
once they run out, so a replayed run meets the same errors, retries and answers as the recorded run.
Recording replaces a cassette on the first interaction of a process and appends after that.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
ENDPOINTS = ("messages", "count_tokens")

JSONObject = dict[str, Any]


def cassette_key(endpoint: str, params: Mapping[str, Any]) -> str:
    """The name of a request's cassette: SHA-256 of the endpoint and its parameters as canonical JSON."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
    canonical = json.dumps(
        {"endpoint": endpoint, "params": params}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CassetteLibrary:
    """A folder of cassettes; thread-safe within a process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._recorded: set[str] = set()  # keys this process has (re)started recording
        self._served: dict[str, int] = {}  # key -> how many interactions this process has replayed

    def path(self, key: str) -> Path:
        """The file holding cassette ``key``."""
        return self.folder / f"{key}.json"

    def record(self, endpoint: str, params: Mapping[str, Any], interaction: Mapping[str, Any]) -> None:
        """Append one interaction to the request's cassette (replacing an older recording of it)."""
        key = cassette_key(endpoint, params)
        with self._lock:
            cassette = self._read(key) if key in self._recorded else None
            if cassette is None:
                cassette = {
                    "version": FORMAT_VERSION,
                    "key": key,
                    "endpoint": endpoint,
                    "request": dict(params),
                    "interactions": [],
                }
            cassette["interactions"].append(dict(interaction))
            self._write(key, cassette)
            self._recorded.add(key)

    def next(self, endpoint: str, params: Mapping[str, Any]) -> JSONObject | None:
        """The next recorded interaction for the request (the last one again when exhausted); None
        when it was never recorded."""
        key = cassette_key(endpoint, params)
        with self._lock:
            cassette = self._read(key)
            if cassette is None or not cassette["interactions"]:
                return None
            interactions: list[JSONObject] = cassette["interactions"]
            index = min(self._served.get(key, 0), len(interactions) - 1)
            self._served[key] = index + 1
            return interactions[index]

    def _read(self, key: str) -> JSONObject | None:
        try:
            text = self.path(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        cassette: JSONObject = json.loads(text)
        if cassette.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"cassette {self.path(key)} has format version {cassette.get('version')!r}, "
                f"this budgetq reads version {FORMAT_VERSION}; record it again"
            )
        return cassette

    def _write(self, key: str, cassette: JSONObject) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Written to a temporary file then renamed, so a reader never sees half a cassette.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{key[:12]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(cassette, out, ensure_ascii=False, indent=1)
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
