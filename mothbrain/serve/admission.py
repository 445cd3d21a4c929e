"""Admission control: how many generations run at once, how many wait, and the Retry-After for the rest."""

from __future__ import annotations

import asyncio
import math
import time


class Overloaded(Exception):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after


def expected_wait(mean_s: float, running_for: list[float], waiting: int, limit: int) -> float:
    """Seconds until a request arriving now would start: each slot frees when its generation ends (a
    generation takes `mean_s`, and those running have run `running_for`), and the `waiting` requests
    ahead take the first slots that free."""
    ends = sorted(max(0.0, mean_s - r) for r in running_for)
    ends += [0.0] * max(0, limit - len(ends))  # a free slot
    ends = ends[:limit]
    for _ in range(waiting):  # each queued request takes the earliest slot and holds it for mean_s
        ends.sort()
        ends[0] += mean_s
    return min(ends)


class Admission:
    """At most `limit` generations at once, at most `queue` waiting; beyond that, Overloaded, with a
    Retry-After from the real expected wait (expected_wait), not a guess."""

    def __init__(self, limit: int, queue: int):
        self.limit, self.queue = max(1, limit), max(0, queue)
        self.waiting = 0
        self.mean_s = 1.0  # moving average of a generation's seconds, for Retry-After
        self._started: dict[int, float] = {}  # running generations: token → start time
        self._next = 0
        self._sem: asyncio.Semaphore | None = None

    @property
    def active(self) -> int:
        return len(self._started)

    def retry_after(self) -> int:
        now = time.monotonic()
        running = [now - t for t in self._started.values()]
        return max(1, math.ceil(expected_wait(self.mean_s, running, self.waiting, self.limit)))

    async def acquire(self) -> float:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.limit)
        if self.active >= self.limit and self.waiting >= self.queue:
            raise Overloaded(self.retry_after())
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        started = time.monotonic()
        self._next += 1
        self._started[self._next] = started
        return self._next

    def release(self, slot: int) -> None:
        started = self._started.pop(slot)
        self.mean_s = 0.8 * self.mean_s + 0.2 * (time.monotonic() - started)
        assert self._sem is not None
        self._sem.release()
