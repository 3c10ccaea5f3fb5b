"""All configuration, read once from the environment by the entry points.

Variables carry the prefix ``BUDGETQ_`` (``BUDGETQ_DATABASE_URL`` …), except the
Anthropic SDK's own ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """budgetq's settings; build one with ``Settings()`` at an entry point and pass it down."""

    model_config = SettingsConfigDict(env_prefix="BUDGETQ_", extra="ignore")

    # Where state lives. Unset means: the demo starts embedded servers under data_dir.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".budgetq")
    # A PostgreSQL host that accepts the connection but never answers is given up after this long; a
    # statement still running after db_statement_timeout_s is cancelled by PostgreSQL (migrations excepted).
    db_connect_timeout_s: float = Field(default=10.0, gt=0)
    db_statement_timeout_s: float | None = Field(default=600.0, gt=0)

    # The Messages API. No key means the local stand-in.
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "BUDGETQ_ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "BUDGETQ_ANTHROPIC_BASE_URL")
    )
    # A key goes over plain http:// only to this machine, unless this says the path is trusted.
    allow_plain_http_base_url: bool = False
    model: str = "claude-sonnet-4-6"
    # live, standin, record or replay; unset: live when a key is set, else the stand-in.
    mode: str | None = None
    # Where the record mode saves cassettes and the replay mode reads them; unset: data_dir/cassettes.
    cassette_dir: Path | None = None

    # The per-call window guard and the shape of a batch.
    safe_utilization: float = Field(default=0.75, gt=0, le=1)
    max_tokens_per_call: int = Field(default=16_384, gt=0)
    max_issues_per_call: int = Field(default=100, gt=0)
    output_tokens_per_issue: int = Field(default=120, gt=0)
    count_tokens_margin: float = Field(default=0.9, gt=0, le=1)
    # Treat the model's window as this many tokens (at most the catalog's); unset: the catalog's.
    context_window: int | None = Field(default=None, gt=0)
    # Plan with this calibration (Claude tokens per cl100k token) instead of the learned or catalog one;
    # workers still check it against provenance and count exactly while it is not confirmed.
    calibration: float | None = Field(default=None, gt=0)
    # Learning the calibration from llm_calls: how many recent calls must back it, at which quantile.
    calibration_min_samples: int = Field(default=20, ge=1)
    calibration_quantile: float = Field(default=0.95, gt=0, le=1)

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
    reaper_interval_s: float = Field(default=60.0, gt=0)
    # A worker holding a paid answer retries its write while PostgreSQL is unreachable, for this long
    # after the answer arrived (worker/durable.py). An outage shorter than this and than two thirds of
    # the lease (which it cannot outlive: renewed every third) costs no second call.
    result_write_retry_s: float = Field(default=120.0, gt=0)
    # A queued batch not claimed for this long is sent again (its message may be lost, e.g. Redis flushed).
    requeue_after_s: float = Field(default=600.0, gt=0)
    # Redis redelivers an unacked task after this long; unset: derived, well above the task's hard limit.
    visibility_timeout_s: float | None = Field(default=None, gt=0)

    # Spend caps in USD (None: no cap).
    run_spend_cap_usd: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    daily_spend_cap_usd: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    # A batch refused only because calls in flight hold the cap's room goes back to the queue this long.
    spend_cap_wait_s: float = Field(default=10.0, gt=0)
    # A synchronous call's reservation still held this long after it was made is given up as unknown
    # (counted, no longer waited for); one unknown this long is released, its worst case left in the
    # cost views (llm_calls.unknown_usd). Longer than any attempt lives (call_timeout_s). Message Batch
    # requests are exempt: their results settle them whenever they arrive.
    unknown_reservation_ttl_s: float = Field(default=3600.0, gt=0)

    # The distributed rate limit shared by all workers through Redis (None: no limit of our own; the
    # API's anthropic-ratelimit-* headers still lower it when they announce one).
    rate_limit_rpm: int | None = Field(default=None, gt=0)
    rate_limit_input_tpm: int | None = Field(default=None, gt=0)
    rate_limit_output_tpm: int | None = Field(default=None, gt=0)
    rate_limit_window_s: float = Field(default=60.0, gt=0)
    # Extra time an admitted request stays in our window, so clock and network skew never let a request
    # reach the API just before its predecessor leaves the API's own window.
    rate_limit_skew_s: float = Field(default=1.0, ge=0)
    rate_limit_max_wait_s: float = Field(default=300.0, gt=0)
    rate_limit_redis_url: str | None = None  # unset: the broker's Redis

    # `budgetq db query`: PostgreSQL cancels a query still running after this long.
    query_timeout_s: float = Field(default=30.0, gt=0)

    # Loading issues: a longer text is rejected with its line number (a cap on a single call's input).
    ingest_max_text_chars: int = Field(default=100_000, ge=1)
    # A tool-loaded issue's compiled SQL, kwargs or message is cut to this many characters.
    loader_max_detail_chars: int = Field(default=4_000, ge=100)

    # Scheduling and observability.
    # When the beat sends the nightly planning: a 5-field cron line in UTC.
    nightly_cron: str = "0 2 * * *"
    # Prometheus metrics of a worker or scheduler process on this port (unset: not served).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # The interface they listen on: this machine only, unless a private network opts in (compose: 0.0.0.0).
    metrics_host: str = "127.0.0.1"
    # Logs of worker and scheduler processes: one JSON object per line (json) or plain text (text).
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    # The Message Batches API (run mode batch-api: 50% off, results within 24 hours).
    # How nightly runs call the model unless their issue set says otherwise: sync or batch-api.
    nightly_api_mode: Literal["sync", "batch-api"] = "sync"
    message_batch_poll_s: float = Field(default=60.0, gt=0)  # the beat's status poll
    # Where errored and expired requests go: the run's next Message Batch, or synchronous calls.
    message_batch_retry_path: Literal["resubmit", "sync"] = "resubmit"
    message_batch_max_requests: int = Field(default=100_000, ge=1, le=100_000)
    message_batch_max_bytes: int = Field(default=256_000_000, ge=1, le=256_000_000)
    # A submission whose create call is not confirmed by then is abandoned and its batches queued again.
    message_batch_submit_lease_s: float = Field(default=600.0, gt=0)

    @field_validator("*", mode="before")
    @classmethod
    def _ascii_digits(cls, value: object) -> object:
        # Python reads "١٠" as 10; a figure of money or tokens must be written as the operator meant it.
        if isinstance(value, str) and any(c.isdigit() and not c.isascii() for c in value):
            raise ValueError(f"{value!r} holds non-ASCII digits; write numbers with 0-9")
        return value

    def resolved_mode(self) -> str:
        """The call mode in force: the configured one, else live with a key and the stand-in without."""
        if self.mode:
            return self.mode
        return "live" if self.anthropic_api_key is not None else "standin"
