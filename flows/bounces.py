"""Bounces as a Prefect flow: DSNs and bounce lists into the state DB (see rollout.bounces).

The flow's result carries counts and file names only: no addresses, no customers.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from rollout.bounces import apply_bounces, iter_bounces
from rollout.brands import load_brands
from rollout.settings import Settings
from rollout.state import StateStore
from rollout.state.connect import describe


@flow(name="legi-pin-bounces", persist_result=False)
def bounces_flow(paths: list[str], settings: Settings) -> tuple[list[str], int]:
    """Mark the customers the notices name; returns the summary's lines and how many notices
    stayed unparsed (every one is listed by name)."""
    existing = StateStore.existing(settings.state_dir, settings.state_url)
    if existing is None:  # a mistyped --state-dir must not create an empty DB and match nothing
        db = describe(settings.state_db)
        return [f"bounces: no state database at {db}; nothing was read or changed"], 0
    existing.close()
    # load_brands checks the names (a typo is an error, not a silent "unmatched" for everyone).
    brands = settings.brands
    chosen = {b.slug for b in load_brands(brands)} if brands else None
    with StateStore(settings.state_db) as store:
        report = apply_bounces(store, iter_bounces(Path(p) for p in paths), chosen)
    return report.lines(), report.unparsed
