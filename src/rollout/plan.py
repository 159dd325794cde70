"""Will everyone be told in time? The rollout forecast from schedule, quota and sending rate.

Pure arithmetic: no Prefect, no state DB. `rollout.report.brand_forecast` reads the inputs (who
is pending, how fast recent waves sent); this module turns them into the time of the last mail,
the verdict against the mandatory date, and what would make a late plan on time.

The model, which is what the scheduled waves do:

- Waves start at the slots of the brand's cron `schedule`, read on Europe/Berlin wall-clock time
  as Prefect's scheduler reads it: 08:00 stays 08:00 across the DST changes; a time the spring
  change skips (02:30 on the last Sunday of March) runs an hour later, a time the autumn change
  repeats runs once, the first time.
- A wave mails the next `daily_quota` pending customers (0: all of them), one after the other at
  the rate cap (none: all at the slot). A wave still sending at the next slot holds the brand's
  lock, so that slot is lost.
- The PIN is asked for from the first minute of the mandatory date, so a mail is on time only if
  it goes out before 00:00 (Berlin) of that day: a wave at 08:00 ON the mandatory date is late.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from itertools import islice, pairwise, takewhile
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from rollout.brands import Brand, BrandError

TIMEZONE = "Europe/Berlin"
BERLIN = ZoneInfo(TIMEZONE)
# How far the forecast looks ahead: e.g. a wave every minute for ~70 days.
MAX_WAVES = 100_000
# The measured rate: sends more than WAVE_GAP apart belong to different waves; the last
# RECENT_WAVES waves count.
WAVE_GAP = timedelta(minutes=30)
RECENT_WAVES = 3


@dataclass(frozen=True)
class Backlog:
    """Who still has to be told, and who waits for someone's decision."""

    new: int  # never mailed
    retry: int = 0  # soft failures, and bounces at an address that has changed since
    unknown: int = 0  # a run died mid-send: mailed again only by `resend --include-unknown`
    failed: int = 0  # failed for good (5xx) at the current address
    bounced: int = 0  # bounced hard at the current address

    @property
    def pending(self) -> int:
        """Everyone the waves (and `resend`) will mail: the forecast is about them."""
        return self.new + self.retry


@dataclass(frozen=True)
class Rate:
    """The sending rate cap: given (--rate), measured from recent waves, or none known."""

    per_second: float | None
    source: str  # "given", "measured" or "none"
    measured_from: int = 0  # how many sent mails the measurement rests on

    def describe(self) -> str:
        if self.per_second is None:
            return "unlimited (none known)"
        r = self.per_second
        figure = f"{r:,.1f} mails/s" if r >= 1 else f"{r:.3g} mails/s"
        if self.source == "measured":
            return f"{figure} (measured over the last {self.measured_from:,} mails)"
        return figure


@dataclass(frozen=True)
class Forecast:
    brand: str
    as_of: datetime
    mandatory_date: date
    schedule: str | None
    daily_quota: int
    rate: Rate
    backlog: Backlog
    waves: int  # waves needed to mail everyone pending
    first_wave: datetime | None
    last_mail: datetime | None  # None: nobody pending, no schedule, or beyond MAX_WAVES
    late: int  # pending customers mailed on or after the mandatory date, or never
    smallest_quota: int | None  # the smallest per-wave quota that makes it from as_of
    latest_start: datetime | None  # the latest slot to start from that makes it

    @property
    def deadline(self) -> datetime:
        return deadline(self.mandatory_date)

    @property
    def verdict(self) -> str:
        if self.backlog.pending == 0:
            return "done"
        return "late" if self.late else "on_time"

    @property
    def margin_days(self) -> int | None:
        """Days from the day of the last mail to the mandatory date (1: the day before)."""
        if self.verdict != "on_time" or self.last_mail is None:
            return None
        return (self.mandatory_date - self.last_mail.astimezone(BERLIN).date()).days

    def as_dict(self) -> dict[str, object]:
        b = self.backlog
        return {
            "brand": self.brand,
            "as_of": _iso(self.as_of),
            "mandatory_date": self.mandatory_date.isoformat(),
            "deadline": _iso(self.deadline),
            "verdict": self.verdict,
            "pending": b.pending,
            "pending_new": b.new,
            "pending_retry": b.retry,
            "awaiting_decision": {"unknown": b.unknown, "failed": b.failed, "bounced": b.bounced},
            "schedule": self.schedule,
            "timezone": TIMEZONE,
            "daily_quota": self.daily_quota,
            "rate_per_second": self.rate.per_second,
            "rate_source": self.rate.source,
            "rate_measured_from": self.rate.measured_from,
            "waves": self.waves,
            "first_wave": _iso(self.first_wave),
            "last_mail": _iso(self.last_mail),
            "margin_days": self.margin_days,
            "late": self.late,
            "smallest_quota": self.smallest_quota,
            "latest_start": _iso(self.latest_start),
            "summary": summary_line(self),
        }


def deadline(mandatory_date: date) -> datetime:
    """00:00 Berlin time on the mandatory date: every mail must have gone out before it."""
    return datetime.combine(mandatory_date, time(0), BERLIN)


def start_of(day: date) -> datetime:
    """`--today D`: plan as of the first minute of D, so D's waves are still to come."""
    return datetime.combine(day, time(0), BERLIN)


# --- the schedule -----------------------------------------------------------------------


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


# --- waves ------------------------------------------------------------------------------


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


# --- the forecast -----------------------------------------------------------------------


def forecast(brand: Brand, backlog: Backlog, rate: Rate, as_of: datetime) -> Forecast:
    """When will the last pending customer of `brand` be mailed, and is that in time?"""
    end, pending, quota = deadline(brand.mandatory_date), backlog.pending, brand.daily_quota
    if brand.schedule is None or pending == 0:
        return Forecast(
            brand.slug, as_of, brand.mandatory_date, brand.schedule, quota, rate, backlog,
            0, None, None, pending, None, None,
        )  # fmt: skip
    try:
        ahead = islice(wave_slots(brand.schedule, as_of), MAX_WAVES)
        run = simulate(pending, ahead, quota, rate.per_second, end)
        ahead = islice(wave_slots(brand.schedule, as_of), MAX_WAVES)
        before = list(takewhile(lambda s: s < end, ahead))
        start = latest_start(pending, brand.schedule, quota, rate.per_second, end)
    except BrandError as error:
        raise BrandError(f"{brand.folder / 'brand.toml'}: {error}") from None
    return Forecast(
        brand=brand.slug,
        as_of=as_of,
        mandatory_date=brand.mandatory_date,
        schedule=brand.schedule,
        daily_quota=quota,
        rate=rate,
        backlog=backlog,
        waves=run.waves,
        first_wave=run.first,
        last_mail=run.last_mail if run.left == 0 else None,
        late=pending - run.in_time,
        smallest_quota=smallest_quota(pending, before, rate.per_second, end),
        latest_start=start,
    )


def measured_rate(sent_per_second: Iterable[tuple[datetime, int]]) -> Rate:
    """The sending rate of the last few waves, from when each mail was recorded as sent.

    `sent_per_second` holds (second, mails recorded sent in it). Sends more than WAVE_GAP apart
    are different waves; the last RECENT_WAVES count. The state DB records whole seconds, so a
    wave's time is its span plus one second: a short wave gives a cautious (low) figure.
    """
    seconds = sorted(sent_per_second)
    if not seconds:
        return Rate(None, "none")
    waves = [[seconds[0]]]
    for before, after in pairwise(seconds):
        if after[0] - before[0] > WAVE_GAP:
            waves.append([])
        waves[-1].append(after)
    recent = waves[-RECENT_WAVES:]
    mails = sum(n for wave in recent for _, n in wave)
    span = sum((w[-1][0] - w[0][0]).total_seconds() + 1 for w in recent)
    return Rate(mails / span, "measured", mails)


# --- how it reads -----------------------------------------------------------------------


def _when(at: datetime) -> str:
    return at.astimezone(BERLIN).strftime("%a %Y-%m-%d %H:%M %Z")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(BERLIN).isoformat(timespec="seconds")


def summary_line(f: Forecast) -> str:
    """One line: pending, the verdict, and what would fix a late plan."""
    due = f.mandatory_date.isoformat()
    b = f.backlog
    waiting = (
        f"; waiting for a decision: {b.unknown} unknown, {b.failed} failed, {b.bounced} bounced"
        if b.unknown or b.failed or b.bounced
        else ""
    )
    if f.verdict == "done":
        return f"{f.brand}: nobody pending{waiting}"
    head = f"{f.brand}: {b.pending:,} pending"
    if f.schedule is None:
        return f"{head}: no schedule in brand.toml, so no wave will mail them{waiting}"
    last = (
        f"last mail {_when(f.last_mail)}"
        if f.last_mail
        else f"not everyone within {MAX_WAVES:,} waves"
    )
    if f.verdict == "on_time":
        days = f.margin_days
        return f"{head}: {last}, on time ({days} day{'s' * (days != 1)} before {due}){waiting}"
    fixes = []
    if f.smallest_quota is not None:
        fixes.append(f"with a quota of {f.smallest_quota:,} per wave")
    if f.latest_start is not None:
        fixes.append(f"if started by {_when(f.latest_start)}")
    fix = f"; on time {' or '.join(fixes)}" if fixes else ""
    return f"{head}: {last}, LATE: {f.late:,} customers on or after {due}{fix}{waiting}"


def forecast_markdown(f: Forecast) -> str:
    """The forecast for a Prefect artifact: counts and dates only, nobody's data."""
    b = f.backlog
    rows = [
        ("pending (new + retry)", f"{b.pending:,} ({b.new:,} + {b.retry:,})"),
        ("waiting for a decision", f"{b.unknown} unknown, {b.failed} failed, {b.bounced} bounced"),
        ("schedule", f"`{f.schedule}` ({TIMEZONE})" if f.schedule else "none"),
        ("quota per wave", f"{f.daily_quota:,}" if f.daily_quota else "all"),
        ("rate", f.rate.describe()),
        ("waves needed", f"{f.waves:,}"),
        ("last mail", _when(f.last_mail) if f.last_mail else "-"),
        ("mandatory date", f.mandatory_date.isoformat()),
        ("verdict", f.verdict.replace("_", " ")),
        ("late", f"{f.late:,}"),
        ("smallest quota that makes it", f"{f.smallest_quota:,}" if f.smallest_quota else "-"),
        ("latest start that makes it", _when(f.latest_start) if f.latest_start else "-"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        f"# Legi-PIN forecast, {f.brand}\n\n{summary_line(f)}\n\n"
        f"| as of {_when(f.as_of)} | |\n|---|---|\n{table}\n"
    )
