"""The whole rollout as one flow: PINs for every brand, then the announcement."""

from __future__ import annotations

from datetime import date

from prefect import flow

from flows.artifacts import run_name
from flows.notify import notify_for_brand
from flows.pins import placement
from rollout.brands import load_brands
from rollout.settings import exports_folder


@flow(name="legi-pin-rollout", persist_result=False, flow_run_name=run_name("run"))
def rollout_run(
    brands: list[str] | None = None,
    exports_dir: str | None = None,
    state_dir: str = ".rollout",
    transport: str | None = None,
    connections: int = 4,
    rate: float | None = None,
    limit: int | None = None,
    after_deadline: bool = False,
    today: date | None = None,
    dask_address: str | None = None,
    chunk_size: int = 5_000,
    unpeppered: bool = False,
) -> dict[str, dict[str, object]]:
    """Per brand: assign and write back PINs, then mail the pending customers (one wave)."""
    exports = exports_folder(exports_dir)
    where = placement(dask_address)
    results: dict[str, dict[str, object]] = {}
    for b in load_brands(brands):
        pins = where.run(b.slug, exports, state_dir, chunk_size, unpeppered)
        sent = notify_for_brand(
            b.slug, state_dir, transport, connections, rate, limit, after_deadline, today
        )
        results[b.slug] = {"pins": pins, "notify": sent}
    return results
