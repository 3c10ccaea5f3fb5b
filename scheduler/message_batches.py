"""The scheduler's side of the batch-api run mode: the beat entry that polls Message Batches.

The poll itself runs on a worker (``POLL_MESSAGE_BATCHES`` on the llm queue, where the SDK clients
are); the beat only sends it every ``BUDGETQ_MESSAGE_BATCH_POLL_S``. A poll is stateless and
idempotent, so a late one can simply expire and two that overlap do no harm.
"""

from __future__ import annotations

from typing import Any

from budgetq.adapters.queue.celery_app import LLM_QUEUE, POLL_MESSAGE_BATCHES
from budgetq.settings import Settings


def beat_entry(settings: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule entry sending POLL_MESSAGE_BATCHES every ``message_batch_poll_s`` seconds."""
    return {
        "budgetq-poll-message-batches": {
            "task": POLL_MESSAGE_BATCHES,
            "schedule": settings.message_batch_poll_s,
            "options": {"queue": LLM_QUEUE, "expires": settings.message_batch_poll_s},
        }
    }
