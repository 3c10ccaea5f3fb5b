"""The stand-in's answers: issue blocks read as the regex it replaced reads them, diagnoses cached."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from budgetq.devtools.standin.answers import _issue_blocks, diagnose

# The reading of the issue blocks before it was made cheaper: the reference.
_REFERENCE = re.compile(r'<issue id="(-?\d+)"[^>]*>\n(.*?)\n</issue>', re.DOTALL)

_PARTS = st.sampled_from(
    ['<issue id="1">\n', '<issue id="-22" priority="3">\n', "\n</issue>", "\n", ">", "<", "x", "</issue>"]
    + ['<issue id="', "7", '"', " ", "\n</issue>\n\n", '<issue id="1" priority="5">\n']
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PARTS, max_size=16).map("".join))
def test_issue_blocks_read_as_the_regex_reads_them(text: str) -> None:
    assert _issue_blocks(text) == {int(i): t for i, t in _REFERENCE.findall(text)}


def test_a_diagnosis_is_the_same_each_time_and_each_caller_gets_its_own() -> None:
    first = diagnose(7, "orders.customer_id is NULL for 4% of rows")
    first["diagnosis"] = "changed by a caller"
    again = diagnose(7, "orders.customer_id is NULL for 4% of rows")
    assert again["diagnosis"] != "changed by a caller"
    assert again == diagnose(7, "orders.customer_id is NULL for 4% of rows")
