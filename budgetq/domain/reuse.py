"""Reuse keys: when two issues are the same question, so that an answer bought once serves both.

A key is a hash of what the model would be asked: the issue's normalized text (and, in ``check``
mode, the check's stable identity), the model family and the prompt/answer-schema version. Two
issues with the same key get the same answer; that is what lets a recurring failure be paid for
once, and an identical issue inside one run be sent once.

Modes, from strictest to loosest:
- ``text``: the normalized text (Unicode NFKC, whitespace folded).
- ``masked``: also masks volatile numbers and dates, so "52 rows failed on 2026-12-01" and
  "57 rows failed on 2026-12-02" of the same check match; numbers inside names (``orders_2024``,
  ``col1``) are kept, they name things.
- ``check``: the check's identity (external id) plus the masked text: the same check failing with
  a different count is the same question, another check with the same words is not.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# Bump when the prompt or the answer schema changes meaning: answers bought under another version are
# never reused.
PROMPT_VERSION = "p1"

_SPACE = re.compile(r"\s+")
_DATETIME = re.compile(
    r"(?<![\w.])\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w])"
)
# A number standing alone (not part of a name): 52, 1,234, 3.5, -7, 12.5%.
_NUMBER = re.compile(
    r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])"  # with thousands separators
    r"|(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w])"
)


class ReuseMode(StrEnum):
    """How strictly two issues must match for one's answer to serve the other."""

    TEXT = "text"
    MASKED = "masked"
    CHECK = "check"


def normalize(text: str) -> str:
    """The text as compared: NFKC (full-width and compatibility forms folded), whitespace folded."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def mask_volatile(text: str) -> str:
    """``text`` with dates, timestamps and standalone numbers replaced by placeholders."""
    return _NUMBER.sub("<n>", _DATETIME.sub("<date>", text))


def reuse_key(
    text: str,
    mode: ReuseMode,
    *,
    model_family: str,
    external_id: str | None = None,
    prompt_version: str = PROMPT_VERSION,
) -> str:
    """The reuse key of an issue: equal keys mean one answer serves both issues."""
    body = normalize(text)
    if mode is not ReuseMode.TEXT:
        body = mask_volatile(body)
    identity = (external_id or "") if mode is ReuseMode.CHECK else ""
    material = "\x00".join((prompt_version, model_family, mode.value, identity, body))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyedIssue:
    """An issue of a run to be planned, with its reuse key."""

    issue_id: int
    priority: int
    key: str


def carriers(issues: Sequence[KeyedIssue]) -> dict[int, int]:
    """Duplicates inside one run: each copy's id mapped to the issue that carries the question for all
    issues of its key (the highest priority, then the earliest id), so only that one is sent."""
    carrier: dict[str, KeyedIssue] = {}
    for issue in issues:
        held = carrier.get(issue.key)
        if held is None or (-issue.priority, issue.issue_id) < (-held.priority, held.issue_id):
            carrier[issue.key] = issue
    return {i.issue_id: carrier[i.key].issue_id for i in issues if carrier[i.key].issue_id != i.issue_id}
