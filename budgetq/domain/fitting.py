"""The two fitting algorithms behind ``packing.pack``: first-fit in arrival order over a bounded
window of open batches, and best-fit-decreasing on input as its fallback (packing's docstring says
when each wins). Both take tiers of items, highest priority first, and return the batches they
opened, in queue order.
"""

from __future__ import annotations

import bisect
import operator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from budgetq.domain.packing import PackItem, PackLimits

# First-fit scans the open batches in creation order. Batches that no remaining issue could fit
# are closed at once; the window bounds the scan when many batches stay barely open, which keeps
# packing O(n * OPEN_WINDOW) at worst. Short issues never reach it; on long mixed ones it costs
# about half a percent of batches, which the decreasing fallback wins back.
OPEN_WINDOW = 64

_INPUT_TOKENS = operator.attrgetter("input_tokens")


class OpenBatch:
    """A batch being filled: what it has left, and its issues so far."""

    __slots__ = ("input_left", "output_left", "items_left", "issue_ids", "priority")

    def __init__(self, item: PackItem, priority: int, limits: PackLimits) -> None:
        items = limits.max_items if limits.max_items is not None else 1 << 62
        self.input_left = limits.input_limit - item.input_tokens
        self.output_left = limits.output_limit - item.output_tokens
        self.items_left = items - 1
        self.issue_ids = [item.issue_id]
        self.priority = priority

    def add(self, item: PackItem) -> None:
        """Put ``item`` in this batch (the caller has checked that it fits)."""
        self.input_left -= item.input_tokens
        self.output_left -= item.output_tokens
        self.items_left -= 1
        self.issue_ids.append(item.issue_id)

    def exhausted(self, min_in: int, min_out: int) -> bool:
        """Whether no item still to come could enter this batch."""
        return self.input_left < min_in or self.output_left < min_out or self.items_left <= 0


def first_fit(
    tiers: list[list[PackItem]],
    priorities: list[int],
    floors: list[tuple[int, int]],
    limits: PackLimits,
) -> list[OpenBatch]:
    """First-fit over a bounded window of open batches; returns batches in creation order."""
    # A batch opened while packing tier P only ever receives issues of tier P or lower, so
    # creation order is already the queue order: priorities never increase along it.
    created: list[OpenBatch] = []
    open_: list[OpenBatch] = []
    for tier, priority, (min_in, min_out) in zip(tiers, priorities, floors, strict=True):
        open_ = [b for b in open_ if not b.exhausted(min_in, min_out)]
        for item in tier:
            need_in = item.input_tokens
            need_out = item.output_tokens
            for pos, batch in enumerate(open_):
                if batch.input_left >= need_in and batch.output_left >= need_out:
                    batch.add(item)
                    if batch.input_left < min_in or batch.output_left < min_out or not batch.items_left:
                        del open_[pos]
                    break
            else:
                batch = OpenBatch(item, priority, limits)
                created.append(batch)
                if not batch.exhausted(min_in, min_out):
                    open_.append(batch)
                    if len(open_) > OPEN_WINDOW:
                        del open_[0]
    return created


def best_fit_decreasing(
    tiers: list[list[PackItem]],
    priorities: list[int],
    floors: list[tuple[int, int]],
    limits: PackLimits,
) -> list[OpenBatch]:
    """Best-fit on input, each tier sorted by decreasing input; returns batches in creation order."""
    created: list[OpenBatch] = []
    # Open batches as (input left, creation index), sorted: the best fit is found by bisection.
    room: list[tuple[int, int]] = []
    for tier, priority, (min_in, min_out) in zip(tiers, priorities, floors, strict=True):
        room = [key for key in room if not created[key[1]].exhausted(min_in, min_out)]
        for item in sorted(tier, key=_INPUT_TOKENS, reverse=True):
            need_in = item.input_tokens
            need_out = item.output_tokens
            pos = bisect.bisect_left(room, (need_in, -1))
            # Fits on input from pos on; the output check rarely fails when input binds, and the
            # scan is bounded so that it never becomes quadratic.
            end = min(len(room), pos + OPEN_WINDOW)
            while pos < end and created[room[pos][1]].output_left < need_out:
                pos += 1
            if pos < end:
                index = room.pop(pos)[1]
                batch = created[index]
                batch.add(item)
            else:
                index = len(created)
                batch = OpenBatch(item, priority, limits)
                created.append(batch)
            if not batch.exhausted(min_in, min_out):
                bisect.insort(room, (batch.input_left, index))
    return created
