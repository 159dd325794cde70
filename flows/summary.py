"""What the command prints at the end: per-brand tables, and the exit code they imply."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rollout.brands import Brand, load_brand, load_brands
from rollout.plan import BERLIN, Forecast, summary_line
from rollout.report import STATUS_COLUMNS, BrandStatus, brand_forecast, brand_status
from rollout.settings import Settings
from rollout.state import StateStore
from rollout.state.connect import describe

console = Console()


PIN_COLUMNS = ("rows_read", "generated", "kept", "already_done", "rejected", "unreachable")


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k} {v}" for k, v in sorted(value.items())) or "0"
    return str(value)


def _print_by_brand(title: str, rows: Sequence[dict[str, object]], keys: Sequence[str]) -> None:
    """One column per brand, one line per figure: fits a terminal however many figures."""
    table = Table(title=title, show_lines=True)
    table.add_column("")
    for r in rows:
        table.add_column(str(r["brand"]), justify="right")
    for key in keys:
        table.add_row(key.replace("_", " "), *(_cell(r[key]) for r in rows))
    console.print(table)


def print_pin_summaries(results: Sequence[dict[str, object]]) -> None:
    _print_by_brand("PIN stage", results, PIN_COLUMNS)


def status_rows(settings: Settings) -> list[BrandStatus]:
    """Read-only: asking where things stand never creates or changes a state DB."""
    with existing_state(settings) as store:
        return [brand_status(store, b, date.today()) for b in load_brands(settings.brands)]


class NothingRunYet(LookupError):
    """The state dir holds no state DB."""


def existing_state(settings: Settings, *, writable: bool = False) -> StateStore:
    """The state DB (read-only unless asked), or NothingRunYet: a mistyped state dir or URL
    creates nothing."""
    found = StateStore.existing(settings.state_dir, settings.state_url)
    if found is None:
        where = (
            f"at {describe(settings.state_url)}"
            if settings.state_url
            else f"in {settings.state_dir}"
        )
        raise NothingRunYet(f"no state DB {where}: nothing has run there yet")
    if not writable:
        return found
    found.close()
    return StateStore(settings.state_db)


def print_status(rows: Sequence[BrandStatus]) -> None:
    _print_by_brand("Legi-PIN rollout", [r.as_dict() for r in rows], STATUS_COLUMNS[1:])


def forecasts(settings: Settings, as_of: datetime, rate: float | None = None) -> list[Forecast]:
    """Read-only, like status: each brand's forecast as of `as_of`."""
    with existing_state(settings) as store:
        return [brand_forecast(store, b, as_of, rate) for b in load_brands(settings.brands)]


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(BERLIN).strftime("%a %Y-%m-%d %H:%M %Z")


def print_forecasts(plans: Sequence[Forecast]) -> None:
    """One column per brand, then each brand's verdict as one line."""
    rows: list[dict[str, object]] = [
        {
            "brand": f.brand,
            "pending": f.backlog.pending,
            "of which retries": f.backlog.retry,
            "waiting: unknown": f.backlog.unknown,
            "waiting: failed": f.backlog.failed,
            "waiting: bounced": f.backlog.bounced,
            "schedule": f.schedule or "none",
            "quota per wave": f.daily_quota or "all",
            "rate": f.rate.describe(),
            "waves": f.waves,
            "first wave": _when(f.first_wave),
            "last mail": _when(f.last_mail),
            "mandatory date": f.mandatory_date.isoformat(),
            "verdict": f.verdict.replace("_", " "),
            "margin days": "-" if f.margin_days is None else f.margin_days,
            "late": f.late,
            "smallest quota": f.smallest_quota or "-",
            "latest start": _when(f.latest_start),
        }
        for f in plans
    ]
    as_of = _when(plans[0].as_of) if plans else ""
    _print_by_brand(f"Legi-PIN forecast as of {as_of}", rows, list(rows[0])[1:] if rows else [])
    for f in plans:
        console.print(summary_line(f), highlight=False, soft_wrap=True)


def finish_with_status(settings: Settings, brands: Sequence[Brand]) -> int:
    """Print the status table; exit 1 when anyone is left failed or with an unknown outcome."""
    rows = status_rows(settings.model_copy(update={"brands": [b.slug for b in brands]}))
    print_status(rows)
    return 1 if any(r.needs_attention for r in rows) else 0


def write_unreachable(settings: Settings, brand: str, out: Path) -> int:
    b = load_brand(brand)
    store = existing_state(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    with store, out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "first_name", "last_name", "email", "reason"])
        count = 0
        for row in store.unreachable(b.slug):
            writer.writerow(row)
            count += 1
    return count
