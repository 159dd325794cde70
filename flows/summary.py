"""What the command prints at the end: per-brand tables, and the exit code they imply."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rollout.brands import Brand, load_brand, load_brands
from rollout.report import STATUS_COLUMNS, brand_status, needs_attention
from rollout.state import StateStore

console = Console()


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "0"
    return str(value)


def print_pin_summaries(results: Sequence[dict[str, object]]) -> None:
    table = Table(title="PIN stage")
    columns = ("brand", "rows_read", "generated", "kept", "already_done", "rejected", "unreachable")
    for c in columns:
        table.add_column(c.replace("_", " "))
    for r in results:
        table.add_row(*(_cell(r[c]) for c in columns))
    console.print(table)


def status_rows(state_dir: Path, brands: list[str] | None) -> list[dict[str, object]]:
    with StateStore.in_dir(state_dir) as store:
        return [brand_status(store, b, date.today()) for b in load_brands(brands)]


def print_status(rows: Sequence[dict[str, object]]) -> None:
    table = Table(title="Legi-PIN rollout")
    for c in STATUS_COLUMNS:
        table.add_column(c.replace("_", " "))
    for r in rows:
        table.add_row(*(_cell(r[c]) for c in STATUS_COLUMNS))
    console.print(table)


def finish_with_status(state_dir: Path, brands: Sequence[Brand]) -> int:
    """Print the status table; exit 1 when anyone is left failed or with an unknown outcome."""
    rows = status_rows(state_dir, [b.slug for b in brands])
    print_status(rows)
    return 1 if any(needs_attention(r) for r in rows) else 0


def write_unreachable(state_dir: Path, brand: str, out: Path) -> int:
    b = load_brand(brand)
    out.parent.mkdir(parents=True, exist_ok=True)
    with StateStore.in_dir(state_dir) as store, out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "first_name", "last_name", "email", "reason"])
        count = 0
        for row in store.unreachable(b.slug):
            writer.writerow(row)
            count += 1
    return count
