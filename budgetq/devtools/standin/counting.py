"""cl100k token counts of long texts, counted word by word with the words' counts cached.

The stand-in counts every request's input and every answer's output with tiktoken, and that was the
bulk of its CPU. Those texts repeat the same words over and over (the answer's JSON is made of
template sentences and keys; the issue blocks of a batch share their markup and vocabulary).
tiktoken first splits a text into pieces with the encoding's pattern, then encodes each piece
alone, so a text's count is the sum of its parts' counts whenever it is cut where a piece starts
(and the part before the cut splits alone as it does inside the text).

For cl100k (``'…|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|…``)
no piece holds a non-whitespace character followed by a space (letters, digits and punctuation runs
never take a trailing space; a space only ever starts a piece or sits in a run of whitespace), and
no alternative that ends a piece on such a character looks past it. So a text can be cut before
every space that follows a non-whitespace character: it is counted as its first word plus, per
further word, the count of " word", those cached (the words not cached yet are counted together in
one encode, cut apart where its tokens end). A text where whitespace precedes a space (two spaces,
an indented line) is counted whole: ``\\s+(?!\\S)`` makes such runs depend on what follows.
``tests/unit/test_standin_counting.py`` checks the sums against plain tiktoken counts.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from itertools import accumulate, repeat
from operator import sub

import tiktoken

# The pattern's \s (Unicode White_Space): a word ending in one is not cut after.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# Bounds on the word cache (it is cleared when full): enough for the vocabulary of many batches,
# small for a dev tool; a longer "word" (a blob without spaces) is counted but never kept.
_CACHED_WORDS = 200_000
_CACHED_WORD_CHARS = 100


class PieceCounter:
    """``count(text) == len(encoding.encode_ordinary(text))``, cheaper on texts of repeated words."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding
        self._encode = encoding.encode_ordinary
        self._spaced: dict[str, int] = {}  # word -> tokens of " " + word (only words cut after)
        self._token_bytes: list[int] | None = None
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        """The number of tokens ``encode_ordinary`` gives for ``text``."""
        words = text.split(" ")
        if len(words) < 3 or (words[0] and words[0][-1] in _WHITESPACE):
            return len(self._encode(text))
        # One thread at a time on the cache: the server's threads share it, tiktoken lets go of the
        # GIL, and a word another thread evicted between the lookups would be a KeyError.
        with self._lock:
            middle = self._middle(words[1:-1])
        if middle is None:
            return len(self._encode(text))
        return len(self._encode(words[0])) + middle + len(self._encode(" " + words[-1]))

    def _middle(self, middle: list[str]) -> int | None:
        """The tokens of " " + word summed over ``middle``; None if some word ends in whitespace."""
        cache = self._spaced
        missing = set(middle).difference(cache)  # set operations and map: no Python loop per word
        if missing:
            if any(not w or w[-1] in _WHITESPACE for w in missing):  # whitespace before a space
                return None
            if len(cache) + len(missing) > _CACHED_WORDS:
                cache.clear()
                missing = set(middle)
            cache.update(self._count_words(list(missing)))
        total = sum(map(cache.__getitem__, middle))
        for word in missing:
            if len(word) > _CACHED_WORD_CHARS:
                del cache[word]
        return total

    def _count_words(self, words: list[str]) -> dict[str, int]:
        """Tokens of " " + word for each word (none empty or ending in whitespace), in one encode:
        they are cut apart in " w1 w2 …" where its tokens end, by the tokens' byte lengths."""
        joined = " " + " ".join(words)
        if joined.isascii():  # one byte a character; map and accumulate: no Python loop per word
            ends = list(accumulate(map((1).__add__, map(len, words))))
        else:
            try:
                ends = list(accumulate(len(w.encode()) + 1 for w in words))
            except UnicodeEncodeError:  # lone surrogates, which tiktoken replaces: one encode per word
                return {w: len(self._encode(" " + w)) for w in words}
        lengths = self._byte_lengths()
        token_ends = list(accumulate(map(lengths.__getitem__, self._encode(joined))))
        at = list(map(bisect_left, repeat(token_ends), ends))
        if list(map(token_ends.__getitem__, at)) != ends:  # never, by the cut rule
            return {w: len(self._encode(" " + w)) for w in words}
        return dict(zip(words, map(sub, at, [-1, *at[:-1]]), strict=True))

    def _byte_lengths(self) -> list[int]:
        """The byte length of every ordinary token (built on first use, ~0.1 s)."""
        if self._token_bytes is None:
            lengths = [0] * self._encoding.n_vocab
            for token in range(self._encoding.n_vocab):
                try:
                    lengths[token] = len(self._encoding.decode_single_token_bytes(token))
                except KeyError:  # an unused id between the ordinary and the special tokens
                    pass
            self._token_bytes = lengths
        return self._token_bytes
