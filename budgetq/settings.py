"""All configuration, read once from the environment by the entry points.

Variables carry the prefix ``BUDGETQ_`` (``BUDGETQ_DATABASE_URL`` …), except the
Anthropic SDK's own ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The cost columns are numeric(18, 6): a cap above this could not be stored with its run.
MAX_CAP_USD = Decimal("999999999999")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class Settings(BaseSettings):
    """budgetq's settings; build one with ``Settings()`` at an entry point and pass it down."""

    # Refused values stay out of the error's text (a key or a webhook URL is a secret); errors() keeps them.
    # No setting is a NaN or an infinity: "inf" seconds reached math.ceil() as a traceback.
    model_config = SettingsConfigDict(
        env_prefix="BUDGETQ_", extra="ignore", hide_input_in_errors=True, allow_inf_nan=False
    )

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
    mode: Literal["live", "standin", "record", "replay"] | None = None
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

    # Answer reuse (budgetq.domain.reuse): an issue whose key matches a paid answer of the same model and
    # prompt version, bought within reuse_max_age (seconds, or ISO 8601 such as P7D) with at least
    # reuse_min_confidence, is not sent again. `--fresh` or a set's reuse_answers = false turn it off for
    # a run or a set; mode "off" everywhere (no keys are stored then, so later runs cannot reuse either).
    reuse_mode: Literal["off", "text", "masked", "check"] = "text"  # else a domain.reuse.ReuseMode
    reuse_max_age: dt.timedelta = Field(default=dt.timedelta(days=7), gt=dt.timedelta(0))
    reuse_min_confidence: float = Field(default=0.5, ge=0, le=1)

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
    run_spend_cap_usd: Decimal | None = Field(default=None, ge=0, le=MAX_CAP_USD, allow_inf_nan=False)
    daily_spend_cap_usd: Decimal | None = Field(default=None, ge=0, le=MAX_CAP_USD, allow_inf_nan=False)
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

    # Notifications (docs/operations.md, "Notifications"): one or more webhook targets, separated by commas
    # or spaces. A Slack incoming webhook (https://hooks.slack.com/..., or slack+https://... for any
    # Slack-compatible one) gets {"text"}; any other http(s) URL (or json+https://...) the event as JSON.
    # The URLs are secrets: never logged, never stored, never printed.
    notify_urls: SecretStr | None = None
    notify_timeout_s: float = Field(default=10.0, gt=0)  # one HTTP try, connect to last byte
    notify_poll_s: float = Field(default=10.0, gt=0)  # how often the beat sends the delivery task
    notify_max_attempts: int = Field(default=8, ge=1)
    notify_retry_base_s: float = Field(default=5.0, gt=0)  # doubling, with full jitter
    notify_retry_max_s: float = Field(default=600.0, gt=0)
    # A notification not delivered within this long of its event is dropped (a stale flood helps nobody).
    notify_max_age_s: float = Field(default=86_400.0, gt=0)
    # A nightly set whose run has not started this long after the cron fired is reported, once a night.
    nightly_start_window_s: float = Field(default=3_600.0, gt=0)

    @field_validator("notify_urls")
    @classmethod
    def _notify_urls_are_urls(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here so every entry point refuses a bad target at start; the message names the target's
        # position, never its text (it may be a secret written slightly wrong).
        if value is None:
            return None
        urls = value.get_secret_value().replace(",", " ").split()
        for n, url in enumerate(urls, start=1):
            bare = url.split("+", 1)[1] if url.startswith(("slack+", "json+")) else url
            parsed = urlsplit(bare)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(
                    f"target {n} of {len(urls)} is not an http(s) URL; write e.g. "
                    "https://hooks.slack.com/services/..., slack+https://host/path or json+https://host/path"
                )
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _ascii_digits(cls, value: object) -> object:
        # Python reads "١٠" as 10; a figure of money or tokens must be written as the operator meant it.
        if isinstance(value, str) and any(c.isdigit() and not c.isascii() for c in value):
            raise ValueError(f"{value!r} holds non-ASCII digits; write numbers with 0-9")
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _empty_mode(cls, value: object) -> object:
        # `BUDGETQ_MODE=` in a .env has always meant "unset" (the mode follows the key).
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        # Checked here: a worker would otherwise die in logging.setLevel() after it started.
        if value.strip().upper() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return value.strip().upper()

    def resolved_mode(self) -> str:
        """The call mode in force: the configured one, else live with a key and the stand-in without."""
        if self.mode:
            return self.mode
        return "live" if self.anthropic_api_key is not None else "standin"


def read_or_exit() -> Settings:
    """Settings from the environment for a worker or scheduler process; a refused setting ends the
    process with one ``error:`` line naming the variable (never its value), not a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(
            f"BUDGETQ_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise SystemExit(f"error: bad setting {reasons}") from None
