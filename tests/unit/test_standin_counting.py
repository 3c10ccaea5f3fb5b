"""The stand-in's piecewise token count equals tiktoken's count of the whole text, whatever the text."""

from __future__ import annotations

import json

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetq.devtools.standin.answers import diagnose
from budgetq.devtools.standin.counting import PieceCounter
from budgetq.devtools.standin.requests import ENCODING, TokenCounter
from budgetq.domain import answers

ENC = tiktoken.get_encoding(ENCODING)
COUNTER = PieceCounter(ENC.encode_ordinary)

# Characters around digit runs that the cut rules are about: ASCII and non-ASCII digits and other
# numerics, every kind of whitespace, letters, punctuation, and text spelling special tokens.
_ALPHABET = st.sampled_from(
    list("0123456789 \t\r\n\x0b\x0c\x1c\x85\xa0\u2003\u3000abcXYZ_.,:;'\"{}[]<>/-")
    + ["\u0663", "\u00b2", "\u2167", "\u00bd", "\u4e00", "\u0e51", "\uff11", "'s", "<|endoftext|>", "é"]
)
_TEXTS = st.lists(_ALPHABET, max_size=60).map("".join)


def _tiktoken(text: str) -> int:
    return len(ENC.encode(text, disallowed_special=()))


@settings(max_examples=3000, deadline=None)
@given(_TEXTS)
def test_any_text_counts_as_tiktoken_counts_it(text: str) -> None:
    assert COUNTER.count(text) == _tiktoken(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_any_unicode_text_counts_as_tiktoken_counts_it(text: str) -> None:
    assert COUNTER.count(text) == _tiktoken(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "7",
        "1234567",
        "a  123",  # two spaces before a run: not cut there
        "a \t123 b",
        "x\n\n42\n",
        "12\u0663456",  # an Arabic-Indic digit continues the run
        "\u00b2123",
        "v1.2.3-rc4 on 2024-03-02T10:11:12Z",
        "<|endoftext|>12<|fim_prefix|>",
        "   99   ",
    ],
)
def test_edge_cases_count_as_tiktoken_counts_them(text: str) -> None:
    assert COUNTER.count(text) == _tiktoken(text)
    assert COUNTER.count(text) == _tiktoken(text)  # and again, from the cache


def test_a_batch_prompt_and_its_answer_count_as_tiktoken_counts_them() -> None:
    issues = [
        answers.PromptIssue(
            10_000 + i, 10, f"Table warehouse.orders_{i % 97} column amount_{i % 13}: {i} null rows (#{i})"
        )
        for i in range(100)
    ]
    user = answers.render_issues(issues)
    output = json.dumps({"diagnoses": [diagnose(p.issue_id, p.text) for p in issues]})
    for text in (user, output, answers.SYSTEM_PROMPT, json.dumps([answers.tool_definition()])):
        assert COUNTER.count(text) == _tiktoken(text)


def test_the_token_counter_uses_the_same_counts() -> None:
    counter = TokenCounter(1.0)
    text = "payments.amount is negative for 12 refunds <|endoftext|> since 2024-03-02"
    assert counter.raw(text) == _tiktoken(text)
    assert counter.of_json({"a": [1, 22, 333, 4444]}) == _tiktoken(json.dumps({"a": [1, 22, 333, 4444]}))
