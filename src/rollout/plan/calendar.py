"""The wave calendar: cron slots on Berlin wall-clock time (as Prefect places them), and the
mandatory date as an instant."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from rollout.brands import BrandError

TIMEZONE = "Europe/Berlin"
BERLIN = ZoneInfo(TIMEZONE)
# How far the forecast looks ahead: e.g. a wave every minute for ~70 days.
MAX_WAVES = 100_000


def deadline(mandatory_date: date) -> datetime:
    """00:00 Berlin time on the mandatory date: every mail must have gone out before it."""
    return datetime.combine(mandatory_date, time(0), BERLIN)


def start_of(day: date) -> datetime:
    """`--today D`: plan as of the first minute of D, so D's waves are still to come."""
    return datetime.combine(day, time(0), BERLIN)


def wave_slots(schedule: str, after: datetime) -> Iterator[datetime]:
    """The wave start times (UTC) at or after `after`, as Prefect's scheduler places them."""
    wall = after.astimezone(BERLIN).replace(tzinfo=None) - timedelta(seconds=1)
    slots = _placed(_cron(schedule, wall, reverse=False), forward=True)
    return (s for s in slots if s >= after)


def slots_before(schedule: str, end: datetime) -> Iterator[datetime]:
    """The wave start times (UTC) before `end`, latest first."""
    wall = end.astimezone(BERLIN).replace(tzinfo=None)
    return (s for s in _placed(_cron(schedule, wall, reverse=True), forward=False) if s < end)


def _cron(schedule: str, wall: datetime, reverse: bool) -> Iterator[datetime]:
    try:
        return iter(CronSim(schedule, wall, reverse=reverse))
    except CronSimError as error:
        raise BrandError(f"schedule {schedule!r} is not a cron expression: {error}") from None


def _placed(walls: Iterator[datetime], forward: bool) -> Iterator[datetime]:
    """Berlin wall-clock times as instants, as Prefect's scheduler places them: a time the
    spring change skips moves on by the gap (fold=0), unless a wave already runs at that
    instant; a time the autumn change repeats is taken once, the first time (fold=0)."""
    seen: datetime | None = None
    for wall in walls:
        slot = wall.replace(tzinfo=BERLIN, fold=0).astimezone(UTC)
        if seen is None or (slot > seen if forward else slot < seen):
            seen = slot
            yield slot
