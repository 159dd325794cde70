"""The PIN stage as Prefect flows: one flow per brand, a parent flow for all brands."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from rollout.assign import Batch, HashMap, assign_pins
from rollout.brands import load_brand, load_brands
from rollout.exports import export_path, open_export
from rollout.pins import PinHasher, new_pin_hashes
from rollout.state import StateStore


# Generate and hash in one task, so a plaintext PIN never crosses a task boundary; the result
# (hashes only) is not persisted, and nothing is cached.
@task(name="hash-new-pins", persist_result=False, cache_policy=NO_CACHE)
def hash_new_pins(batch: Batch, hasher: PinHasher) -> list[str]:
    return new_pin_hashes(batch, hasher)


def task_hash_map(hasher: PinHasher, window: int) -> HashMap:
    """Submit batches to the flow's task runner, at most `window` ahead; yield hashes in order."""

    def run(batches: Iterator[Batch]) -> Iterator[list[str]]:
        in_flight: deque[object] = deque()
        for batch in batches:
            in_flight.append(hash_new_pins.submit(batch, hasher))
            if len(in_flight) >= window:
                yield in_flight.popleft().result()  # type: ignore[attr-defined]
        while in_flight:
            yield in_flight.popleft().result()  # type: ignore[attr-defined]

    return run


# The default task runner is a local thread pool: argon2 releases the GIL, so threads fill the cores.
@flow(name="legi-pin-pins-brand", persist_result=False)
def pins_for_brand(
    brand: str, exports_dir: str, state_dir: str, chunk_size: int = 5_000, window: int = 2
) -> dict[str, object]:
    """Read the brand's export, give everyone a hash, record it and write the export back."""
    b = load_brand(brand)
    export = open_export(export_path(Path(exports_dir), b), b)
    with StateStore.in_dir(Path(state_dir)) as store, store.brand_lock(b.slug, "pins"):
        hash_map = task_hash_map(PinHasher.from_env(), window)
        summary = assign_pins(export, b, store, Path(state_dir), hash_map, chunk_size)
    create_table_artifact(
        key=f"pins-{b.slug}", table=[summary.as_dict()], description=f"PIN stage, {b.display_name}"
    )
    return summary.as_dict()


def pins_flow_for(dask_address: str | None) -> object:
    """The brand flow on the local thread pool, or on an existing Dask cluster."""
    if not dask_address:
        return pins_for_brand
    from prefect_dask.task_runners import DaskTaskRunner

    runner = DaskTaskRunner(address=dask_address)
    return pins_for_brand.with_options(task_runner=runner)  # type: ignore[arg-type]


@flow(name="legi-pin-pins", persist_result=False)
def pins_all(
    brands: list[str] | None = None,
    exports_dir: str = "data/samples",
    state_dir: str = ".rollout",
    dask_address: str | None = None,
    chunk_size: int = 5_000,
) -> list[dict[str, object]]:
    brand_flow = pins_flow_for(dask_address)
    window = 8 if dask_address else 2
    return [
        brand_flow(b.slug, exports_dir, state_dir, chunk_size, window)  # type: ignore[operator]
        for b in load_brands(brands)
    ]
