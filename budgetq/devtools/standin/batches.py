"""The stand-in's Message Batches API: create, retrieve, list and the JSONL results stream.

``POST /v1/messages/batches`` takes ``{"requests": [{"custom_id", "params"}]}`` (at most 100,000
requests and 256 MB, unique custom ids matching ``^[a-zA-Z0-9_-]{1,64}$``, no streaming) and
answers a ``message_batch`` object that stays ``in_progress`` for ``processing_delay_s``. The
first look after that processes every request through the stand-in's own Messages endpoint (same
answers, usage, caching and faults as a synchronous call), except that a seeded draw turns a
request ``errored`` (with probability ``errored_rate``) or ``expired`` (``expired_rate``). A
succeeded message's ``usage.service_tier`` is ``"batch"``. ``results_url`` then points at
``GET /v1/messages/batches/{id}/results``, one JSON line per request, in shuffled order as the
docs warn. ``POST /v1/messages/batches/{id}/cancel`` cancels what has not been processed.
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from budgetq.devtools.standin.batch_requests import custom_ids, parse_requests

JSONDict = dict[str, object]
EXPIRY = timedelta(hours=24)
_PATH = re.compile(r"^/v1/messages/batches(?:/(?P<id>[^/]+)(?:/(?P<action>results|cancel))?)?$")


@dataclass(frozen=True)
class BatchBehaviour:
    """How the stand-in's Message Batches behave: processing delay and errored/expired draws."""

    processing_delay_s: float = 0.0
    errored_rate: float = 0.0
    expired_rate: float = 0.0
    seed: int = 0
    # The next creates answer these HTTP statuses in turn (an API error each), then creates succeed.
    create_statuses: tuple[int, ...] = ()
    # A successful create's answer goes out this late, the Message Batch already made: a client that
    # dies (or gives up) meanwhile created a Message Batch whose id it never learns.
    create_delay_s: float = 0.0

    def __post_init__(self) -> None:
        rates = (self.errored_rate, self.expired_rate)
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0:
            raise ValueError(f"errored_rate and expired_rate must be in [0, 1] and sum to <= 1, got {rates}")
        if self.processing_delay_s < 0 or self.create_delay_s < 0:
            raise ValueError(
                "processing_delay_s and create_delay_s must be >= 0, got "
                f"{self.processing_delay_s} and {self.create_delay_s}"
            )
        object.__setattr__(self, "create_statuses", tuple(self.create_statuses))  # JSON gives a list
        if any(not 400 <= s <= 599 for s in self.create_statuses):
            raise ValueError(f"create_statuses must be HTTP error statuses, got {self.create_statuses}")

    def to_dict(self) -> JSONDict:
        """The behaviour as JSON."""
        return asdict(self) | {"create_statuses": list(self.create_statuses)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> BatchBehaviour:
        """A behaviour from JSON; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown batch behaviour keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items()})  # type: ignore[arg-type]


@dataclass(frozen=True)
class BatchReply:
    """What an endpoint answers: a status and a JSON body, or JSON lines."""

    status: int
    body: object = None
    lines: tuple[JSONDict, ...] | None = None
    delay_s: float = 0.0


# Sends one Messages request body to the stand-in and returns (HTTP status, JSON body).
SendMessage = Callable[[bytes], tuple[int, JSONDict]]


@dataclass
class _Batch:
    id: str
    requests: list[tuple[str, bytes]]
    created_at: datetime
    ready_at: float
    behaviour: BatchBehaviour
    results: list[JSONDict] | None = None
    ended_at: datetime | None = None
    cancel_initiated_at: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error(status: int, etype: str, message: str) -> BatchReply:
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": _request_id()}
    return BatchReply(status, body)


def _request_id() -> str:
    return "req_01" + uuid.uuid4().hex[:22]


class MessageBatches:
    """The Message Batches endpoints of one stand-in; thread-safe, batches kept in memory."""

    def __init__(
        self,
        send: SendMessage,
        base_url: Callable[[], str],
        behaviour: BatchBehaviour,
        clock: Callable[[], float],
    ) -> None:
        self._send = send
        self._base_url = base_url
        self._clock = clock
        self._lock = threading.Lock()
        self._behaviour = behaviour
        self._rng = random.Random(behaviour.seed)
        self._batches: dict[str, _Batch] = {}
        self._create_failures = list(behaviour.create_statuses)
        self.create_attempts = 0  # POST /v1/messages/batches received, failed or not
        # Each create received, in order: the status it was answered and the custom ids it carried.
        self.create_log: list[tuple[int, tuple[str, ...]]] = []

    @property
    def behaviour(self) -> BatchBehaviour:
        """The behaviour new batches get."""
        return self._behaviour

    def set_behaviour(self, behaviour: BatchBehaviour) -> None:
        """Change the behaviour of batches created from now on (and restart the seeded draws)."""
        with self._lock:
            self._behaviour, self._rng = behaviour, random.Random(behaviour.seed)
            self._create_failures = list(behaviour.create_statuses)

    def reset(self) -> None:
        """Forget every batch and restart the seeded draws."""
        with self._lock:
            self._batches.clear()
            self._rng = random.Random(self._behaviour.seed)
            self._create_failures = list(self._behaviour.create_statuses)
            self.create_attempts = 0
            self.create_log.clear()

    def summary(self) -> list[JSONDict]:
        """Every batch as the API shows it (for the admin endpoint and tests)."""
        with self._lock:
            batches = list(self._batches.values())
        return [self._view(b) for b in batches]

    def handle(self, method: str, path: str, body: bytes) -> BatchReply:
        """Serve one request under ``/v1/messages/batches``."""
        match = _PATH.match(path)
        if match is None:
            return _error(404, "not_found_error", f"Not found: {method} {path}")
        batch_id, action = match.group("id"), match.group("action")
        if batch_id is None:
            if method == "POST":
                return self._create(body)
            if method == "GET":
                return BatchReply(200, self._list())
            return _error(405, "invalid_request_error", f"Method {method} not allowed on {path}")
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            return _error(404, "not_found_error", f"Message Batch {batch_id!r} not found")
        if method == "POST" and action == "cancel":
            return BatchReply(200, self._cancel(batch))
        if method != "GET" or action == "cancel":
            return _error(405, "invalid_request_error", f"Method {method} not allowed on {path}")
        self._process_if_due(batch)
        if action is None:
            return BatchReply(200, self._view(batch))
        if batch.results is None:
            return _error(404, "not_found_error", f"Message Batch {batch_id} has not ended; poll it first")
        shuffled = list(batch.results)
        random.Random(batch.id).shuffle(shuffled)  # results come in no particular order
        return BatchReply(200, lines=tuple(shuffled))

    def _create(self, body: bytes) -> BatchReply:
        with self._lock:
            self.create_attempts += 1
            status = self._create_failures.pop(0) if self._create_failures else None
        if status is not None:
            self._note_create(status, custom_ids(body))
            return _error(status, _ERROR_TYPES.get(status, "api_error"), f"injected create failure {status}")
        try:
            requests = parse_requests(body)
        except ValueError as exc:
            self._note_create(400, custom_ids(body))
            return _error(400, "invalid_request_error", str(exc))
        batch_id = "msgbatch_01" + uuid.uuid4().hex[:22]
        with self._lock:
            behaviour = self._behaviour
            batch = _Batch(
                id=batch_id,
                requests=requests,
                created_at=datetime.now(UTC),
                ready_at=self._clock() + behaviour.processing_delay_s,
                behaviour=behaviour,
            )
            self._batches[batch_id] = batch
        self._note_create(200, tuple(c for c, _ in requests))
        return BatchReply(200, self._view(batch), delay_s=behaviour.create_delay_s)

    def _note_create(self, status: int, custom_ids: tuple[str, ...]) -> None:
        with self._lock:
            self.create_log.append((status, custom_ids))

    def _list(self) -> JSONDict:
        views = sorted(self.summary(), key=lambda v: str(v["created_at"]), reverse=True)
        first = views[0]["id"] if views else None
        last = views[-1]["id"] if views else None
        return {"data": views, "has_more": False, "first_id": first, "last_id": last}

    def _cancel(self, batch: _Batch) -> JSONDict:
        with batch.lock:
            if batch.results is None and batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = datetime.now(UTC)
                canceled: list[JSONDict] = [
                    {"custom_id": c, "result": {"type": "canceled"}} for c, _ in batch.requests
                ]
                batch.results = canceled
                batch.ended_at = datetime.now(UTC)
        return self._view(batch)

    def _process_if_due(self, batch: _Batch) -> None:
        with batch.lock:  # one thread processes; the others wait and then see it ended
            if batch.results is not None or self._clock() < batch.ready_at:
                return
            with self._lock:
                draws = [self._rng.random() for _ in batch.requests]
            behaviour = batch.behaviour
            results: list[JSONDict] = []
            for (custom_id, params), u in zip(batch.requests, draws, strict=True):
                if u < behaviour.expired_rate:
                    result: JSONDict = {"type": "expired"}
                elif u < behaviour.expired_rate + behaviour.errored_rate:
                    result = {
                        "type": "errored",
                        "error": {
                            "type": "error",
                            "error": {"type": "api_error", "message": "Internal server error"},
                            "request_id": _request_id(),
                        },
                    }
                else:
                    result = self._run(params)
                results.append({"custom_id": custom_id, "result": result})
            batch.results, batch.ended_at = results, datetime.now(UTC)

    def _run(self, params: bytes) -> JSONDict:
        status, body = self._send(params)
        if status != 200:
            return {"type": "errored", "error": body}
        usage = body.get("usage")
        if isinstance(usage, dict):
            usage["service_tier"] = "batch"
        return {"type": "succeeded", "message": body}

    def _view(self, batch: _Batch) -> JSONDict:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if batch.results is None:
            counts["processing"] = len(batch.requests)
        else:
            for entry in batch.results:
                result = entry["result"]
                assert isinstance(result, dict)
                counts[str(result["type"])] += 1
        ended = batch.results is not None
        status = "ended" if ended else "canceling" if batch.cancel_initiated_at else "in_progress"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": _rfc3339(batch.ended_at),
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.created_at + EXPIRY),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(batch.cancel_initiated_at),
            "results_url": f"{self._base_url()}/v1/messages/batches/{batch.id}/results" if ended else None,
        }
