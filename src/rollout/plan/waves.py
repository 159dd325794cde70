"""Waves over time: who is mailed when, and the smallest quota or latest start that is on time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from itertools import islice

from rollout.plan.calendar import MAX_WAVES, slots_before


@dataclass
class _Run:
    left: int
    waves: int = 0
    first: datetime | None = None
    last_mail: datetime | None = None
    in_time: int = 0


def simulate(
    pending: int,
    slots: Iterable[datetime],
    quota: int,
    rate: float | None,
    end: datetime,
    stop_at_end: bool = False,
) -> _Run:
    """Send `pending` mails in waves at `slots` (UTC, ascending); count those before `end`."""
    run = _Run(left=pending)
    exact = None if rate is None else Fraction(rate).limit_denominator(1_000_000)
    busy_until: datetime | None = None
    for slot in slots:
        if run.left == 0 or run.waves >= MAX_WAVES or (stop_at_end and slot >= end):
            break
        if busy_until is not None and slot < busy_until:
            continue  # the previous wave still holds the lock
        n = run.left if quota <= 0 else min(quota, run.left)
        if exact is None:
            run.last_mail = busy_until = slot
            in_time = n if slot < end else 0
        else:  # mail i goes out at slot + i/rate
            run.last_mail = slot + _seconds((n - 1) / exact)
            busy_until = slot + _seconds(n / exact)
            in_time = 0 if slot >= end else min(n, math.ceil(_exact_seconds(end - slot) * exact))
        run.first = run.first or slot
        run.in_time += in_time
        run.left -= n
        run.waves += 1
    return run


def _seconds(value: Fraction) -> timedelta:
    return timedelta(seconds=float(value))


def _exact_seconds(delta: timedelta) -> Fraction:
    return Fraction(delta // timedelta(microseconds=1), 1_000_000)


def _fits(
    pending: int, slots: Sequence[datetime], quota: int, rate: float | None, end: datetime
) -> bool:
    return simulate(pending, slots, quota, rate, end, stop_at_end=True).in_time == pending


def smallest_quota(
    pending: int, slots: Sequence[datetime], rate: float | None, end: datetime
) -> int | None:
    """The smallest per-wave quota with which the `slots` before `end` mail everyone in time.

    Fewer than pending/len(slots) per wave cannot; above that, the search assumes a larger
    quota never finishes later (true unless one wave outlasts the gap to the next slot).
    """
    if pending == 0 or not slots or not _fits(pending, slots, pending, rate, end):
        return None
    low, high = math.ceil(pending / len(slots)), pending
    while low < high:
        mid = (low + high) // 2
        if _fits(pending, slots, mid, rate, end):
            high = mid
        else:
            low = mid + 1
    return low


def latest_start(
    pending: int, schedule: str, quota: int, rate: float | None, end: datetime
) -> datetime | None:
    """The latest slot from which this quota and rate still mail everyone before `end`.

    Any earlier start makes it too (the issue's "earliest start that makes it" is this: start
    no later than it). It may lie before today: then the plan needed an earlier start.
    """
    if pending == 0:
        return None
    earlier = islice(slots_before(schedule, end), MAX_WAVES)
    back: list[datetime] = []  # the slots before `end`, latest first, read as far as needed

    def fits(count: int) -> bool:
        back.extend(islice(earlier, max(0, count - len(back))))
        return count <= len(back) and _fits(pending, back[count - 1 :: -1], quota, rate, end)

    low = 1 if quota <= 0 else math.ceil(pending / quota)  # waves needed at the least
    high = low
    while not fits(high):  # a rate cap may need more waves than the quota alone: widen
        if high > len(back) or high >= MAX_WAVES:
            return None
        low, high = high + 1, min(2 * high, MAX_WAVES)
    while low < high:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid + 1
    return back[high - 1]
