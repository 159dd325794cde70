"""Where a brand's rollout stands, derived from the state DB (the one source of truth)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from pathlib import Path

from rollout.brands import Brand, campaign_id
from rollout.files import write_atomically
from rollout.plan import Backlog, Forecast, Rate, forecast, measured_rate
from rollout.state import StateStore


@dataclass(frozen=True)
class BrandStatus:
    """Where one brand stands; turned into JSON or a table only at the edge (`as_dict`)."""

    brand: str
    mandatory_date: str  # ISO date
    days_left: int
    customers: int
    pins_generated: int
    pins_kept: int
    rejected: dict[str, int]  # by reason
    unreachable: dict[str, int]  # by reason
    sent: int
    failed: dict[str, int]  # by reply code and words (addresses redacted)
    bounced: int
    # never mailed again (ARF complaints); soft failures caused by our side, by reason:
    # a blocker until fixed (see README, "Bounces")
    complaints: int
    sender_problems: dict[str, int]
    unknown: int
    sending: int  # tried, no answer recorded yet: in doubt if no run is sending now
    claimed: int  # taken by a run, not tried yet: not in doubt (a gone run's go back)
    pending: int

    @property
    def needs_attention(self) -> bool:
        """Someone is left failed or with an unknown outcome, or our side is refused: the run
        should not exit 0."""
        return bool(self.failed or self.unknown or self.sending or self.sender_problems)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


STATUS_COLUMNS = tuple(f.name for f in fields(BrandStatus))


def brand_status(store: StateStore, brand: Brand, today: date) -> BrandStatus:
    campaign = campaign_id(brand)
    counts = store.counts(brand.slug, campaign)
    pins, deliveries = counts["pins"], counts["deliveries"]
    marks = store.mark_counts(brand.slug, campaign)
    return BrandStatus(
        brand=brand.slug,
        mandatory_date=brand.mandatory_date.isoformat(),
        days_left=(brand.mandatory_date - today).days,
        customers=sum(pins.values()) + sum(counts["rejected"].values()),
        pins_generated=pins.get("generated", 0),
        pins_kept=pins.get("kept", 0),
        rejected=counts["rejected"],
        unreachable=counts["unreachable"],
        sent=deliveries.get("sent", 0),
        failed=counts["failed"],
        bounced=deliveries.get("bounced", 0),
        complaints=sum(marks["complaint"].values()),
        sender_problems=marks["sender_problem"],
        unknown=deliveries.get("unknown", 0),
        sending=deliveries.get("sending", 0),
        claimed=deliveries.get("claimed", 0),
        pending=store.pending_count(brand.slug, campaign),
    )


def write_report(state_dir: Path, brand: Brand, status: dict[str, object]) -> Path:
    """Atomically (re)write <state-dir>/reports/<brand>.json."""
    out = state_dir / "reports" / f"{brand.slug}.json"
    write_atomically(out, (json.dumps(status, indent=2, ensure_ascii=False) + "\n").encode())
    return out


def brand_forecast(
    store: StateStore, brand: Brand, as_of: datetime, rate: float | None = None
) -> Forecast:
    """Will everyone pending be mailed before the mandatory date? `rate`: the cap in mails per
    second, else the rate recent waves reached, else none (say so)."""
    campaign = campaign_id(brand)
    counts = store.backlog_counts(brand.slug, campaign)
    claimed = counts.pop("claimed")  # to be mailed in this wave or the next, as the pending
    backlog = Backlog(new=store.pending_count(brand.slug, campaign) + claimed, **counts)
    cap = (
        Rate(rate, "given")
        if rate is not None
        else measured_rate(store.sent_per_second(brand.slug, campaign))
    )
    return forecast(brand, backlog, cap, as_of)
