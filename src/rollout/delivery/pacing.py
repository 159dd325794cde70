"""How fast: a token bucket across all connections, and full-jitter backoff for retries."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class RateLimiter:
    """Token bucket as virtual scheduling (GCRA): `reserve` books the next slot and says how
    long to wait for it. In any window of t seconds at most rate * t + burst slots start."""

    def __init__(
        self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._next = clock()  # theoretical time of the next slot

    def reserve(self) -> float:
        now = self._clock()
        slot = max(self._next, now)
        self._next = slot + self._interval
        return max(0.0, slot - self._tolerance - now)


def backoff_delay(attempt: int, base: float, maximum: float) -> float:
    """Full jitter: spreads the retries of many messages that failed together."""
    ceiling = min(maximum, base * 2.0 ** min(attempt - 1, 62))
    return random.uniform(0, ceiling)
