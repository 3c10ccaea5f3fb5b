"""The stand-in's fault plan: what to break and how often, drawn per request with a seeded RNG.

Transport faults (drop, 529, 429, 500) and answer faults (refusal, malformed, truncated,
context_exceeded) each exclude one another; the id faults, slowness and a stream that breaks
after ``message_start`` are drawn independently. ``budgetq.devtools.standin`` applies a ``FaultDraw``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal, TypeVar

from budgetq.devtools.standin.mapping import JSONDict, from_mapping

TransportFault = Literal["drop", "overloaded", "rate_limited", "server_error"]
AnswerFault = Literal["refusal", "malformed", "truncated", "context_exceeded"]

_T = TypeVar("_T", bound=str)
_TRANSPORT: tuple[TransportFault, ...] = ("drop", "overloaded", "rate_limited", "server_error")
_ANSWER: tuple[AnswerFault, ...] = ("refusal", "malformed", "truncated", "context_exceeded")


@dataclass(frozen=True)
class FaultDraw:
    """The faults chosen for one request (every request draws the same number of values)."""

    transport: TransportFault | None = None
    slow: bool = False
    answer: AnswerFault | None = None
    duplicate_ids: bool = False
    invented_ids: bool = False
    missing_ids: bool = False
    stream_overloaded: bool = False
    retry_after: int = 1
    variant: int = 0

    def names(self) -> list[str]:
        flags = ("slow", "duplicate_ids", "invented_ids", "missing_ids", "stream_overloaded")
        out = [n for n in (self.transport, self.answer) if n is not None]
        return out + [n for n in flags if getattr(self, n)]


@dataclass
class FaultPlan:
    """What the stand-in breaks. Transport faults (drop, 529, 429, 500) exclude each other, as do
    answer faults (refusal, malformed, truncated, context_exceeded); their sums must be <= 1."""

    p_overloaded: float = 0.0
    p_rate_limited: float = 0.0
    p_server_error: float = 0.0
    p_drop: float = 0.0
    p_slow: float = 0.0
    slow_seconds: float = 2.0
    p_malformed: float = 0.0
    p_truncated: float = 0.0
    p_refusal: float = 0.0
    p_context_exceeded: float = 0.0
    p_duplicate_ids: float = 0.0
    p_invented_ids: float = 0.0
    p_missing_ids: float = 0.0
    p_stream_overloaded: float = 0.0
    retry_after_range: tuple[int, int] = (1, 3)
    spend_limit: bool = False
    fail_first_n: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be within 0..1, got {value}")
        for group in (_TRANSPORT, _ANSWER):
            if sum(self._p(name) for name in group) > 1.0 + 1e-9:
                raise ValueError(f"probabilities of {group} add up to more than 1")
        low, high = self.retry_after_range
        if not 0 <= low <= high:
            raise ValueError(f"retry_after_range must be 0 <= low <= high, got {self.retry_after_range}")
        if self.slow_seconds < 0 or self.fail_first_n < 0:
            raise ValueError("slow_seconds and fail_first_n must not be negative")

    def _p(self, name: str) -> float:
        value: float = getattr(self, "p_" + name)
        return value

    def to_dict(self) -> JSONDict:
        data = asdict(self)
        data["retry_after_range"] = list(self.retry_after_range)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FaultPlan:
        plan: FaultPlan = from_mapping(cls, data)
        return plan

    def draw(self, rng: random.Random) -> FaultDraw:
        """Choose this request's faults; always consumes the same number of random values."""
        u_transport, u_slow, u_answer, u_dup, u_inv, u_miss, u_stream = (rng.random() for _ in range(7))
        retry_after = rng.randint(*self.retry_after_range)
        variant = rng.randrange(3)
        return FaultDraw(
            transport=self._pick(_TRANSPORT, u_transport),
            slow=u_slow < self.p_slow,
            answer=self._pick(_ANSWER, u_answer),
            duplicate_ids=u_dup < self.p_duplicate_ids,
            invented_ids=u_inv < self.p_invented_ids,
            missing_ids=u_miss < self.p_missing_ids,
            stream_overloaded=u_stream < self.p_stream_overloaded,
            retry_after=retry_after,
            variant=variant,
        )

    def _pick(self, names: tuple[_T, ...], u: float) -> _T | None:
        edge = 0.0
        for name in names:
            edge += self._p(name)
            if u < edge:
                return name
        return None
