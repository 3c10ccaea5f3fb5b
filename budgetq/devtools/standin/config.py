"""How the stand-in behaves: ``StandInConfig`` (re-exported by ``budgetq.devtools.standin``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from budgetq.devtools.standin.batches import BatchBehaviour
from budgetq.devtools.standin.faults import FaultPlan
from budgetq.devtools.standin.limits import RateLimits


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
    batches: BatchBehaviour = field(default_factory=BatchBehaviour)
    seed: int = 0
    # An HTTP status every count_tokens request is answered with (a gateway without the endpoint: 404).
    count_tokens_status: int | None = None
    # Headers added to every /v1/messages reply, over the ones it computes: what a misbehaving API or
    # proxy might send (``{"anthropic-ratelimit-requests-limit": "1e400"}``).
    extra_headers: dict[str, str] = field(default_factory=dict)
