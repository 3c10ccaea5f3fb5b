"""cl100k token counts of long texts, counted piecewise with the pieces' counts cached.

The stand-in counts every request's input and every answer's output with tiktoken, and that was the
bulk of its CPU. Those texts are mostly the same few strings (the answer's JSON is made of template
sentences and keys; the issue blocks of a batch share their markup) separated by numbers (ids,
counts, confidences). tiktoken first splits a text into pieces with the encoding's pattern, then
encodes each piece alone, so a text's count is the sum of its parts' counts whenever it is cut
where a piece starts (and the part before the cut splits alone as it does inside the text).

For cl100k (``'…|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|…``)
a maximal run of numeric characters is always its own pieces (no other alternative takes a digit),
so the text can be cut right after an ASCII digit run that no other numeric character follows, and
right before one that no numeric character precedes - unless two whitespace characters precede it:
``\\s+(?!\\S)`` would then leave the last one to the digits' side in the text but not in the part
alone (where ``\\s++$`` takes them all). A digit run cut on both sides is ``ceil(len / 3)`` tokens
(every 1- to 3-digit string is one cl100k token); the other parts are encoded once and cached.
``tests/unit/test_standin_counting.py`` checks the sums against plain tiktoken counts.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

_DIGITS = re.compile(r"[0-9]+")

# Parts up to this long are cached (a bounded LRU of short strings: template text and markup);
# longer ones - prose without numbers - are rarely repeated and would make the cache large.
_CACHED_PART_CHARS = 256
_CACHED_PARTS = 1 << 16


def _numeric(char: str) -> bool:
    """Whether the pattern's ``\\p{N}`` may match ``char`` (a neighbour of an ASCII digit run, so
    never an ASCII digit); a character with a numeric value counts too, to err on not cutting."""
    return char >= "\x80" and (char.isnumeric() or unicodedata.category(char)[0] == "N")


class PieceCounter:
    """``count(text) == len(encode_ordinary(text))``, cheaper on texts made of repeated parts."""

    def __init__(self, encode_ordinary: Callable[[str], list[int]]) -> None:
        self._encode = encode_ordinary
        # Per instance (not a module-level cache): one per encoding, freed with its counter.
        self._cached: Callable[[str], int] = functools.lru_cache(maxsize=_CACHED_PARTS)(self._uncached)

    def _uncached(self, part: str) -> int:
        return len(self._encode(part))

    def _part(self, part: str) -> int:
        if not part:
            return 0
        if len(part) > _CACHED_PART_CHARS:
            return self._uncached(part)
        return self._cached(part)

    def count(self, text: str) -> int:
        """The number of tokens ``encode_ordinary`` gives for ``text``."""
        total, start, size = 0, 0, len(text)
        for match in _DIGITS.finditer(text):
            begin, end = match.span()
            cut_before = begin > 0 and not _numeric(text[begin - 1])
            if cut_before and begin > 1 and text[begin - 1].isspace() and text[begin - 2].isspace():
                cut_before = False
            cut_after = end == size or not _numeric(text[end])
            if cut_before:
                total += self._part(text[start:begin])
                start = begin
            elif begin == 0:
                cut_before = True  # the text starts with the run: nothing precedes it
            if not cut_after:
                continue  # the run goes on in a non-ASCII digit: it stays inside the next part
            if cut_before:
                total += -(-(end - begin) // 3)  # the whole numeric run, 3 digits a token
            else:
                total += self._part(text[start:end])
            start = end
        return total + self._part(text[start:])
