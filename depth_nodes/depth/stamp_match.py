"""Live-stream input matching for depth estimation: newest-only mailbox, radar by stamp, stereo pairs.

Stamps are integer nanoseconds. Every structure is bounded, so a fast or
misbehaving publisher can never grow memory, and a late frame is replaced by a
newer one instead of being queued (DESIGN: "a late frame is dropped, never
queued").
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any


class LatestSlot:
    """One-slot mailbox shared by a producer and a consumer thread.

    ``put`` replaces an item the consumer has not taken yet and counts it in
    ``dropped``; ``take`` returns the newest item (or None) and empties the slot.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._item: Any = None
        self.dropped = 0
        self.taken = 0

    def put(self, item: Any) -> bool:
        """Store ``item``; True if it replaced an untaken one (counted as dropped)."""
        if item is None:
            raise ValueError("LatestSlot cannot hold None")
        with self._lock:
            replaced = self._item is not None
            self.dropped += int(replaced)
            self._item = item
        return replaced

    def take(self) -> Any:
        with self._lock:
            item, self._item = self._item, None
            self.taken += int(item is not None)
        return item


class StampedHistory:
    """The last ``capacity`` (stamp_ns, item) pairs, e.g. radar frames, newest last."""

    def __init__(self, capacity: int = 8):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._items: deque[tuple[int, Any]] = deque(maxlen=int(capacity))

    def __len__(self) -> int:
        return len(self._items)

    def add(self, stamp_ns: int, item: Any) -> None:
        """Append ``item``; one with the newest item's stamp replaces it (a repeated message)."""
        if self._items and self._items[-1][0] == int(stamp_ns):
            self._items[-1] = (int(stamp_ns), item)
            return
        self._items.append((int(stamp_ns), item))

    def awaits(self, t_ns: int) -> bool:
        """True when an item stamped at or just before ``t_ns`` may be due but is not here yet: the
        newest stamp plus the median stamp interval lies within a quarter interval after ``t_ns``, or
        earlier. Before an interval is known (fewer than two items): no item yet, or the one item is
        older than ``t_ns``. False when the stamps do not increase."""
        if len(self._items) < 2:
            return not self._items or self._items[-1][0] < int(t_ns)
        stamps = [s for s, _ in self._items]
        gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
        period = gaps[len(gaps) // 2]
        if period <= 0:
            return False
        return stamps[-1] + period <= int(t_ns) + period // 4

    def newest_within(self, t_ns: int, max_age_ns: int) -> tuple[int, Any] | None:
        """The newest (stamp_ns, item) with ``|stamp - t| <= max_age_ns``, else None."""
        best = None
        for stamp, item in self._items:
            if abs(stamp - int(t_ns)) <= max_age_ns and (best is None or stamp >= best[0]):
                best = (stamp, item)
        return best


class ExactStampPairer:
    """Pairs left/right items carrying exactly equal stamps (rectified stereo from one trigger).

    Each side keeps at most ``capacity`` unpaired items (oldest evicted). When a
    pair completes, every older unpaired item on both sides is discarded (the
    newest pair wins) and counted in ``unpaired``.
    """

    SIDES = ("left", "right")

    def __init__(self, capacity: int = 4):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._pending: dict[str, OrderedDict[int, Any]] = {s: OrderedDict() for s in self.SIDES}
        self.unpaired = 0

    def add(self, side: str, stamp_ns: int, item: Any) -> tuple[int, Any, Any] | None:
        """Add one item; returns ``(stamp_ns, left, right)`` when it completes a pair."""
        if side not in self.SIDES:
            raise ValueError(f"side must be one of {self.SIDES}, got {side!r}")
        stamp_ns = int(stamp_ns)
        other = self._pending["right" if side == "left" else "left"]
        if stamp_ns in other:
            match = other.pop(stamp_ns)
            for q in self._pending.values():
                stale = [s for s in q if s < stamp_ns]
                for s in stale:
                    del q[s]
                self.unpaired += len(stale)
            return (stamp_ns, item, match) if side == "left" else (stamp_ns, match, item)
        mine = self._pending[side]
        mine[stamp_ns] = item
        mine.move_to_end(stamp_ns)
        while len(mine) > self.capacity:
            mine.popitem(last=False)
            self.unpaired += 1
        return None
