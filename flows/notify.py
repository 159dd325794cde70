"""The notification stage as Prefect flows: send, re-send, preview, and the summary artifacts."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.artifacts import artifact_key, by_brand_markdown, run_name
from flows.progress import SendProgress
from rollout.brands import Brand, campaign_id, load_brand, load_brands
from rollout.delivery import DeliverySettings
from rollout.lock import brand_lock
from rollout.notify import (
    NotifySummary,
    check_deadline,
    notify_brand,
    resend_brand,
    resend_statuses,
)
from rollout.report import STATUS_COLUMNS, brand_status, write_report
from rollout.settings import Settings
from rollout.state import StateStore


@flow(name="legi-pin-notify-brand", persist_result=False, flow_run_name=run_name("notify"))
def notify_for_brand(brand: str, settings: Settings, resend: bool = False) -> dict[str, object]:
    """Send the announcement to everyone pending (one wave of at most `settings.limit`, else
    the brand's daily_quota), or re-send to the failed and bounced."""
    b = load_brand(brand)
    check_deadline(b, settings.today or date.today(), settings.after_deadline)
    delivery = DeliverySettings(connections=settings.connections, rate_per_second=settings.rate)
    link = settings.chosen_transport()
    limit = settings.limit if settings.limit is not None else (b.daily_quota or None)
    include_unknown = settings.include_unknown
    state_dir = settings.state_dir
    # On PostgreSQL, runs that send new mails share the brand (each claims its own customers);
    # a resend, like a PIN run, has it alone.
    lock = brand_lock(
        state_dir,
        b.slug,
        "resend" if resend else "notify",
        url=settings.state_url,
        shared=not resend,
    )
    with lock, StateStore(settings.state_db) as store:
        total = _expected(store, b, limit, resend, include_unknown)
        with SendProgress(b.slug, total) as progress:
            if resend:
                job = resend_brand(
                    b, store, link, delivery, include_unknown=include_unknown, progress=progress
                )
            else:
                job = notify_brand(b, store, link, delivery, limit=limit, progress=progress)
            # Sending is asyncio inside; the flow itself stays sync so parents can call it.
            summary = asyncio.run(job)
        publish_status(store, b, state_dir, summary)
    summary.raise_if_stopped()  # the flow run ends Failed, with the reason as its message
    return summary.as_dict()


def _expected(
    store: StateStore, brand: Brand, limit: int | None, resend: bool, include_unknown: bool
) -> int:
    """How many mails the progress bar counts towards."""
    if resend:
        statuses = resend_statuses(include_unknown)
        return len(store.deliveries(brand.slug, campaign_id(brand), statuses))
    pending = store.pending_count(brand.slug, campaign_id(brand))
    return min(pending, limit) if limit else pending


def publish_status(
    store: StateStore, brand: Brand, state_dir: Path, summary: NotifySummary | None = None
) -> dict[str, object]:
    """The JSON report under <state-dir>/reports/, and the status of every brand in the state
    dir as a Prefect artifact (a markdown table like `rollout status`, counts only)."""
    today = date.today()
    status = brand_status(store, brand, today)
    rows = [
        (status if b.slug == brand.slug else brand_status(store, b, today)).as_dict()
        for b in load_brands()
    ]
    report = status.as_dict()
    if summary is not None:
        report["run"] = summary.as_dict()
    write_report(state_dir, brand, report)
    create_markdown_artifact(
        key=artifact_key("status", state_dir),
        markdown=by_brand_markdown("Legi-PIN rollout", rows, STATUS_COLUMNS[1:]),
        description=f"Legi-PIN rollout status in {Path(state_dir).name}, after {brand.slug}",
    )
    return report


@flow(name="legi-pin-resend", persist_result=False, flow_run_name=run_name("resend"))
def resend_all(settings: Settings) -> list[dict[str, object]]:
    """Re-send to the failed and bounced (and, with include_unknown, the unknown) customers of
    every brand."""
    return [notify_for_brand(b.slug, settings, resend=True) for b in load_brands(settings.brands)]
