"""The stand-in's piecewise token count equals tiktoken's count of the whole text, whatever the text."""

from __future__ import annotations

import json
import threading

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetq.devtools.standin import counting
from budgetq.devtools.standin.answers import diagnose
from budgetq.devtools.standin.counting import PieceCounter
from budgetq.devtools.standin.requests import ENCODING, TokenCounter
from budgetq.domain import answers

ENC = tiktoken.get_encoding(ENCODING)
COUNTER = PieceCounter(ENC)

# What the cut rule is about: spaces after every kind of whitespace (and characters Python calls
# whitespace but the pattern does not), letters, digits, punctuation, contractions, special tokens.
_ALPHABET = st.sampled_from(
    list("  0123456789 \t\r\n\x0b\x0c\x1c\x1f\x85\xa0\u180e\u200b\u2003\u2028\u3000abcXYZ_.,:;'\"{}[]<>/-")
    + ["\u0663", "\u00b2", "\u4e00", "'s", "'LL", "<|endoftext|>", "é", "\U0001f600", " 's", " \n"]
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
        "a b",
        " a b c ",
        "a  b c",  # two spaces: counted whole
        "a \tb c",
        "x \n y z",
        "it 's a 'll b",
        "v1.2.3-rc4 on 2024-03-02T10:11:12Z ",
        "<|endoftext|> 12 <|fim_prefix|>",
        "a\u3000 b c",
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


def test_threads_sharing_a_small_cache_count_right(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cache that is cleared every few texts and long words that are never kept
    monkeypatch.setattr(counting, "_CACHED_WORDS", 60)
    counter = PieceCounter(ENC)
    texts = [f"issue {i} of {i % 7} rows in t_{i} {'x' * (90 + i % 20)} ends (#{i})." for i in range(400)]
    wrong: list[str] = []

    def work(part: list[str]) -> None:
        try:
            wrong.extend(t for t in part if counter.count(t) != _tiktoken(t))
        except Exception as exc:  # a KeyError from a word another thread evicted, say
            wrong.append(repr(exc))

    # When four threads count them at once, then every count is tiktoken's
    threads = [threading.Thread(target=work, args=(texts[k::4],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
