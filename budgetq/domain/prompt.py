"""The request for one batch and its size in the model's tokens, as the guard and the packer see it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from budgetq.domain.answers import (
    ISSUE_WRAPPER_TOKENS,
    SYSTEM_PROMPT,
    TOOL_NAME,
    TOOL_USE_SYSTEM_TOKENS,
    PromptIssue,
    fixed_prompt_text,
    render_issues,
    tool_definition,
)
from budgetq.domain.tokens import estimate, estimate_tokens, raw_count


@dataclass(frozen=True)
class BatchPrompt:
    """System prompt, tool and user message for a batch, with the estimated input tokens."""

    system: str
    user: str
    tool: Mapping[str, object]
    tool_choice: Mapping[str, object]
    estimated_input_tokens: int
    # (raw cl100k count, characters) of the system prompt with the tool, and of the user message: the
    # estimate at another calibration without encoding the text again.
    counts: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))

    def estimated_at(self, calibration: float) -> int:
        """The estimated input tokens of this same request at ``calibration``."""
        return _estimated(self.counts, calibration)


def _estimated(counts: tuple[tuple[int, int], tuple[int, int]], calibration: float) -> int:
    (fixed_raw, fixed_chars), (user_raw, user_chars) = counts
    return (
        estimate_tokens(fixed_raw, fixed_chars, calibration)
        + TOOL_USE_SYSTEM_TOKENS
        + estimate_tokens(user_raw, user_chars, calibration)
    )


@lru_cache(maxsize=1)
def _fixed_counts() -> tuple[int, int]:
    """(raw count, characters) of the system prompt and tool every call sends: encoded once a process."""
    text = SYSTEM_PROMPT + json.dumps(tool_definition())
    return raw_count(text), len(text)


def fixed_input_tokens(calibration: float) -> int:
    """Input tokens every call pays whatever its issues: system prompt, tool, preface, tool-use overhead."""
    return estimate(fixed_prompt_text(), calibration) + TOOL_USE_SYSTEM_TOKENS


def issue_input_tokens(raw_tokens: int, chars: int, calibration: float) -> int:
    """Estimated input tokens of one issue inside its block."""
    return estimate_tokens(raw_tokens, chars, calibration) + ISSUE_WRAPPER_TOKENS


def build_prompt(issues: Sequence[PromptIssue], calibration: float) -> BatchPrompt:
    """The request for ``issues``, estimated on the exact text that will be sent."""
    user = render_issues(issues)
    counts = (_fixed_counts(), (raw_count(user), len(user)))
    return BatchPrompt(
        system=SYSTEM_PROMPT,
        user=user,
        tool=tool_definition(),
        tool_choice={"type": "tool", "name": TOOL_NAME},
        estimated_input_tokens=_estimated(counts, calibration),
        counts=counts,
    )


def observed_ratio(billed_input: int, estimated_input: int, calibration: float) -> float | None:
    """Billed input tokens per cl100k token of a call whose input ``build_prompt`` estimated at
    ``calibration``; the raw count is recovered from the estimate (to within rounding; a little high
    where the 4-characters floor set the estimate), None when it cannot be."""
    if calibration <= 0 or billed_input < 0:
        return None
    raw = (estimated_input - TOOL_USE_SYSTEM_TOKENS) / calibration
    return billed_input / raw if raw > 0 else None
