"""The PIN stage on a real Dask cluster (two worker processes) through prefect-dask."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLES

from rollout.pins import is_pin_hash


@pytest.fixture
def cluster(prefect_api: str) -> Iterator[str]:
    from distributed import LocalCluster

    # Workers report task runs to the test's Prefect server instead of each starting their own.
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env={"PREFECT_API_URL": prefect_api},
    ) as c:
        yield c.scheduler_address


def test_pin_chunks_are_hashed_on_the_cluster_and_recorded_once(
    cluster: str, tmp_path: Path
) -> None:
    from distributed import Client

    from flows.pins import pins_all
    from rollout.settings import Settings

    given = Settings(
        brands=["jamobil"], exports=SAMPLES, state_dir=tmp_path, dask_address=cluster, chunk_size=40
    )
    [summary] = pins_all(given)

    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        stored = dict(
            db.execute("SELECT customer_id, pin_hash FROM customers WHERE pin_source = 'generated'")
        )
    assert len(stored) == summary["generated"] > 300
    assert all(is_pin_hash(h) for h in stored.values())
    assert len(set(stored.values())) == len(stored)  # every customer a hash (and salt) of their own
    with Client(cluster) as client:  # the work ran on the workers, spread over both
        done = client.run(lambda dask_worker: dask_worker.state.transition_counter)
    assert len(done) == 2 and all(count > 0 for count in done.values())
