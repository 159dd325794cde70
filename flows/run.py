"""The whole rollout as one flow: PINs for every brand, then the announcement."""

from __future__ import annotations

from prefect import flow

from flows.artifacts import run_name
from flows.notify import notify_for_brand
from flows.pins import placement
from rollout.brands import load_brands
from rollout.settings import Settings


@flow(name="legi-pin-rollout", persist_result=False, flow_run_name=run_name("run"))
def rollout_run(settings: Settings) -> dict[str, dict[str, object]]:
    """Per brand: assign and write back PINs, then mail the pending customers (one wave)."""
    settings.require_exports()
    where = placement(settings.dask_address)
    results: dict[str, dict[str, object]] = {}
    for b in load_brands(settings.brands):
        pins = where.run(b.slug, settings)
        results[b.slug] = {"pins": pins, "notify": notify_for_brand(b.slug, settings)}
    return results
