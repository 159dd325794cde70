"""The forecast of one brand: the inputs, the verdict, and how it reads in a terminal or Prefect."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import islice, pairwise, takewhile

from rollout.brands import Brand, BrandError
from rollout.plan.calendar import BERLIN, MAX_WAVES, TIMEZONE, deadline, wave_slots
from rollout.plan.waves import latest_start, simulate, smallest_quota

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
