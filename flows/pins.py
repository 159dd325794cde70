"""The PIN stage as Prefect flows: one flow per brand, a parent flow for all brands."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from flows.artifacts import artifact_key, by_brand_markdown, run_name
from flows.summary import PIN_COLUMNS
from rollout.assign import Batch, HashMap, assign_pins
from rollout.brands import load_brand, load_brands
from rollout.exports import export_path, open_export
from rollout.keys import brand_keys
from rollout.lock import brand_lock
from rollout.pins import IssuedPin, PinHasher, new_pin_hashes
from rollout.seal import PinSealer
from rollout.settings import Settings
from rollout.state import StateStore

Tag = TypeVar("Tag")


# Generate, hash and seal in one task, so a plaintext PIN never crosses a task boundary; the
# result (hashes and sealed copies only) is not persisted, and nothing is cached.
@task(name="hash-new-pins", persist_result=False, cache_policy=NO_CACHE)
def hash_new_pins(
    batch: Batch, hasher: PinHasher, threads: int | None, sealer: PinSealer | None = None
) -> list[IssuedPin]:
    return new_pin_hashes(batch, hasher, threads, sealer)


def task_hash_map(
    hasher: PinHasher, window: int, threads: int | None, sealer: PinSealer | None = None
) -> HashMap:
    """Submit batches to the flow's task runner, at most `window` ahead; yield hashes in order."""

    def run(work: Iterator[tuple[Tag, Batch]]) -> Iterator[tuple[Tag, list[IssuedPin]]]:
        in_flight: deque[tuple[Tag, PrefectFuture[list[IssuedPin]]]] = deque()
        for tag, batch in work:
            in_flight.append((tag, hash_new_pins.submit(batch, hasher, threads, sealer)))
            if len(in_flight) >= window:
                done, future = in_flight.popleft()
                yield done, future.result()
        while in_flight:
            done, future = in_flight.popleft()
            yield done, future.result()

    return run


# The default task runner is a local thread pool: argon2 frees the GIL, so threads fill the cores.
@flow(name="legi-pin-pins-brand", persist_result=False, flow_run_name=run_name("pins"))
def pins_for_brand(
    brand: str, settings: Settings, window: int = 2, threads: int | None = None
) -> dict[str, object]:
    """Read the brand's export, give everyone a hash, record it and write the export back."""
    b = load_brand(brand)
    keys = brand_keys(b, unpeppered=settings.unpeppered)  # refuses before anything is read
    export = open_export(export_path(settings.require_exports(), b), b)
    state_dir = settings.state_dir
    with (
        brand_lock(state_dir, b.slug, "pins", url=settings.state_url),
        StateStore(settings.state_db) as store,
    ):
        hash_map = task_hash_map(keys.hasher(), window, threads, keys.sealer)
        summary = assign_pins(export, b, store, state_dir, hash_map, settings.chunk_size)
    create_markdown_artifact(
        key=artifact_key("pins", state_dir, b.slug),
        markdown=by_brand_markdown(
            f"PIN stage, {b.display_name}", [summary.as_dict()], PIN_COLUMNS
        ),
        description=f"PIN stage, {b.display_name}",
    )
    return summary.as_dict()


@dataclass(frozen=True)
class Placement:
    """Where the PIN chunks are hashed, and how much work to keep in flight there."""

    brand_flow: Callable[..., dict[str, object]]
    window: int  # chunks submitted ahead of the one being recorded
    threads: int | None  # hashing threads per chunk; None: every core of the machine

    def run(self, brand: str, settings: Settings) -> dict[str, object]:
        return self.brand_flow(brand, settings, self.window, self.threads)


def placement(dask_address: str | None) -> Placement:
    """The local thread pool (one chunk at a time on every core), or an existing Dask cluster."""
    if not dask_address:
        return Placement(pins_for_brand, window=2, threads=None)
    from distributed import Client
    from prefect_dask.task_runners import DaskTaskRunner

    with Client(dask_address, timeout=60) as client:  # type: ignore[no-untyped-call]
        slots = sum(client.nthreads().values())
    # Dask already runs one task per worker thread: one hashing thread per task, and two
    # chunks per slot in flight so no worker waits for the flow process.
    runner = DaskTaskRunner(address=dask_address)
    cluster_flow = pins_for_brand.with_options(task_runner=runner)  # type: ignore[arg-type]
    return Placement(cluster_flow, window=2 * max(slots, 1), threads=1)


@flow(name="legi-pin-pins", persist_result=False, flow_run_name=run_name("pins"))
def pins_all(settings: Settings) -> list[dict[str, object]]:
    """The PIN stage for every brand; chunks are the unit of work (hundreds to thousands)."""
    settings.require_exports()
    where = placement(settings.dask_address)
    return [where.run(b.slug, settings) for b in load_brands(settings.brands)]
