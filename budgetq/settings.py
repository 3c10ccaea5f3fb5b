"""All configuration, read once from the environment by the entry points.

Variables carry the prefix ``BUDGETQ_`` (``BUDGETQ_DATABASE_URL`` …), except the
Anthropic SDK's own ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """budgetq's settings; build one with ``Settings()`` at an entry point and pass it down."""

    model_config = SettingsConfigDict(env_prefix="BUDGETQ_", extra="ignore")

    # Where state lives. Unset means: the demo starts embedded servers under data_dir.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".budgetq")

    # The Messages API. No key means the local stand-in.
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "BUDGETQ_ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "BUDGETQ_ANTHROPIC_BASE_URL")
    )
    model: str = "claude-sonnet-4-6"
    # live, standin, record or replay; unset: live when a key is set, else the stand-in.
    mode: str | None = None

    # The per-call window guard and the shape of a batch.
    safe_utilization: float = Field(default=0.75, gt=0, le=1)
    max_tokens_per_call: int = Field(default=16_384, gt=0)
    max_issues_per_call: int = Field(default=100, gt=0)
    output_tokens_per_issue: int = Field(default=120, gt=0)
    count_tokens_margin: float = Field(default=0.9, gt=0, le=1)

    # Calls: timeouts and the retry policy (tenacity).
    call_timeout_s: float = Field(default=120.0, gt=0)
    retry_max_attempts: int = Field(default=8, ge=1)
    retry_max_seconds: float = Field(default=900.0, gt=0)
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_backoff_s: float = Field(default=60.0, gt=0)
    retry_after_cap_s: float = Field(default=300.0, gt=0)

    # Workers, leases and the reaper.
    worker_concurrency: int = Field(default=20, ge=1)
    lease_seconds: float = Field(default=300.0, gt=0)
    batch_max_failures: int = Field(default=3, ge=1)

    # Spend caps in USD (None: no cap).
    run_spend_cap_usd: Decimal | None = None
    daily_spend_cap_usd: Decimal | None = None

    # Scheduling and observability.
    nightly_cron: str = "0 2 * * *"
    metrics_port: int | None = None

    def resolved_mode(self) -> str:
        """The call mode in force: the configured one, else live with a key and the stand-in without."""
        if self.mode:
            return self.mode
        return "live" if self.anthropic_api_key is not None else "standin"
