"""The PIN stage through the Prefect flow on a Dask cluster: 2 worker processes against 1.

    .venv/bin/python bench/dask.py [--n 2000] [--chunk-size 100] [--workers 1 2]
                                   [--api harness|harness-no-env|none|URL]

For each worker count, a `distributed.LocalCluster(n_workers=k, threads_per_worker=1,
processes=True)` is started and `flows.pins.pins_all(Settings(brands=["congstar"], ...,
dask_address=cluster.scheduler_address, chunk_size=...))` runs the PIN stage on a synthetic export
of N customers, none hashed yet, at OWASP cost (t=2, 19 MiB, p=1), so hashing dominates.
chunk_size must be small enough to give every worker several tasks (N / chunk_size tasks).

Prefect needs one API for the driver and every worker:
- harness (default): `prefect_test_harness` in the driver starts one temporary server; its URL is
  also put into the workers' environment via `LocalCluster(env={"PREFECT_API_URL": ...})`;
- harness-no-env: the same server, but the workers get no PREFECT_API_URL in their environment
  (they then rely on the settings prefect-dask serialises with each task);
- none: no server and no URL: each process falls back to its own temporary server;
- a URL: an existing server (`prefect server start`).
After each run every worker is probed: does it run a temporary Prefect server of its own?

Diagnostic (no Prefect): the same hashing as plain Dask tasks, `new_pin_hashes(batch, hasher,
threads)` with threads=1 (one core per worker) and with the default threads=None (what the flow's
task does: os.cpu_count() threads in every task, whatever the worker's thread count).

Headline: ``dask_speedup_2_workers: 1.9x`` (flow wall time, 1 worker / 2 workers).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from _common import (
    Timer,
    bench_keys_env,
    headline,
    load_line,
    machine_line,
    rate,
    scratch_dir,
    section,
    set_env,
)

ARGON2_VARIABLES = (
    "ROLLOUT_ARGON2_TIME_COST",
    "ROLLOUT_ARGON2_MEMORY_KIB",
    "ROLLOUT_ARGON2_PARALLELISM",
    "ROLLOUT_TEST_ONLY_CHEAP_ARGON2",
)


def probe_worker() -> dict[str, Any]:
    """Runs in a worker: its PREFECT_API_URL and any temporary Prefect server it started."""
    import psutil

    servers: list[str] = []
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is not None:
        for instance in server_module.SubprocessASGIServer._instances.values():
            if getattr(instance, "running", False):
                servers.append(instance.api_url)
    children = [
        " ".join(c.cmdline()[:6])
        for c in psutil.Process().children(recursive=True)
        if "uvicorn" in " ".join(c.cmdline()) or "prefect" in " ".join(c.cmdline())
    ]
    return {
        "pid": os.getpid(),
        "env_api_url": os.environ.get("PREFECT_API_URL"),
        "malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "own_servers": servers,
        "server_processes": children,
    }


@contextmanager
def prefect_api(mode: str) -> Iterator[str | None]:
    """The API URL the driver (and, unless told otherwise, the workers) should use."""
    if mode in ("harness", "harness-no-env"):
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        started = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=180):
            url = PREFECT_API_URL.value()
            took = time.perf_counter() - started
            print(f"prefect_test_harness: one temporary server at {url}, up in {took:.1f} s")
            yield str(url)
    elif mode == "none":
        print("no Prefect server and no PREFECT_API_URL: every process starts its own")
        yield None
    else:
        set_env({"PREFECT_API_URL": mode})
        print(f"existing Prefect server at {mode}")
        yield mode


def customers_with_pins(state_dir: Path) -> int:
    with sqlite3.connect(state_dir / "state.sqlite3") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM customers WHERE pin_source = 'generated'"
        ).fetchone()
    return int(count)


def completed_hash_tasks() -> int:
    """`hash-new-pins` task runs the driver's Prefect API holds as completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    wanted = TaskRunFilter(
        name=TaskRunFilterName(like_="hash-new-pins"),
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.COMPLETED])),
    )
    count, page = 0, 200
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(task_run_filter=wanted, limit=page, offset=count)
            count += len(runs)
            if len(runs) < page:
                return count


def cpu_seconds(worker_pids: set[int]) -> dict[str, float]:
    """CPU seconds so far of this process and its descendants, by role."""
    import psutil

    me = psutil.Process()
    own = me.cpu_times()
    used = dict.fromkeys(CPU_ROLES, 0.0)
    used["driver"] = own.user + own.system
    for child in me.children(recursive=True):
        try:
            t = child.cpu_times()
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if child.pid in worker_pids:
            used["workers (user)"] += t.user
            used["workers (system)"] += t.system
        elif "uvicorn" in command or "prefect" in command:
            used["prefect server"] += t.user + t.system
        else:
            used["other children"] += t.user + t.system
    return used


CPU_ROLES = ("driver", "workers (user)", "workers (system)", "prefect server", "other children")


@contextmanager
def malloc_setting(mode: str) -> Iterator[str]:
    """distributed gives every worker MALLOC_TRIM_THRESHOLD_=65536; `glibc` takes it away."""
    import dask.config

    if mode == "dask":
        yield "MALLOC_TRIM_THRESHOLD_=65536 (distributed's default for workers)"
        return
    # The nanny copies its pre-spawn variables into this process's environment, whence the
    # next cluster's workers would inherit them: remove the variable from both.
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    with dask.config.set({key: None}):
        yield "no MALLOC_TRIM_THRESHOLD_ (glibc's adaptive malloc thresholds)"
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)


def run_flow(
    workers: int, args: argparse.Namespace, api_url: str | None, work: Path, exports: Path
) -> float:
    """Seconds for `pins_all` on a fresh LocalCluster of `workers` processes."""
    from distributed import Client, LocalCluster

    from flows.pins import pins_all
    from rollout.settings import Settings

    env = {"PREFECT_API_URL": api_url} if api_url and args.api != "harness-no-env" else {}
    section(f"flow, {workers} worker process(es) x 1 thread, worker env {env or '{}'}")
    with (
        malloc_setting(args.malloc) as malloc,
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=env,
        ) as cluster,
        Client(cluster) as client,
    ):
        print(f"workers' malloc: {malloc}")
        # A cluster is long-lived: keep the one-off imports out of the measurement.
        client.run(importlib.import_module, "flows.pins")
        worker_pids = set(client.run(os.getpid).values())
        state_dir = work / f"state-flow-{workers}"
        recorded = completed_hash_tasks()
        before = cpu_seconds(worker_pids)
        with Timer() as t:
            pins_all(
                Settings(
                    brands=["congstar"],
                    exports=exports,
                    state_dir=state_dir,
                    dask_address=cluster.scheduler_address,
                    chunk_size=args.chunk_size,
                )
            )
        after = cpu_seconds(worker_pids)
        done = customers_with_pins(state_dir)
        if done != args.n:
            raise RuntimeError(f"the flow recorded {done} new PINs, expected {args.n}")
        tasks = -(-args.n // args.chunk_size)
        print(
            f"{args.n} PINs in {t.seconds:.1f} s = {rate(args.n, t.seconds):,.1f} hashes/s "
            f"({tasks} tasks)"
        )
        used = {role: after[role] - before[role] for role in CPU_ROLES}
        mine = sum(used.values())
        rest = max(0.0, t.machine_cpu_seconds - mine)
        print(
            "  cores kept busy: "
            + ", ".join(f"{role} {cpu / t.seconds:.2f}" for role, cpu in used.items())
            + f"; rest of the machine {rest / t.seconds:.2f}"
        )
        recorded = completed_hash_tasks() - recorded
        print(f"  task runs the driver's Prefect API shows completed: {recorded} of {tasks}")
        for address, found in client.run(probe_worker).items():
            own = found["own_servers"] or found["server_processes"]
            print(
                f"  worker {address} pid {found['pid']}: PREFECT_API_URL in env = "
                f"{found['env_api_url']}; own temporary Prefect server: {own or 'none'}; "
                f"MALLOC_TRIM_THRESHOLD_={found['malloc_trim']}"
            )
    return t.seconds


def run_plain(workers: int, n: int, chunk_size: int, threads: int | None, malloc: str) -> float:
    """Seconds for the same hashing as plain Dask tasks (no Prefect)."""
    from distributed import Client, LocalCluster

    from rollout.pins import PinHasher, new_pin_hashes

    hasher = PinHasher.from_env()
    batch = [(f"C{i:09d}", date(1980, 1 + i % 12, 1 + i % 28)) for i in range(n)]
    batches = [batch[i : i + chunk_size] for i in range(0, n, chunk_size)]
    with (
        malloc_setting(malloc),
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(importlib.import_module, "rollout.pins")
        with Timer() as t:
            futures = client.map(
                new_pin_hashes, batches, hasher=hasher, threads=threads, pure=False
            )
            hashes = [h for part in client.gather(futures) for h in part]
    assert len(hashes) == n
    label = "threads=1" if threads == 1 else "threads=None (os.cpu_count() per task)"
    print(f"plain Dask, {workers} worker(s), {label}: {rate(n, t.seconds):,.1f} hashes/s")
    return t.seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="customers (all need a PIN)")
    parser.add_argument("--chunk-size", type=int, default=100, help="customers per task")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--api", default="harness", help="harness (default), harness-no-env, none, or a URL"
    )
    parser.add_argument(
        "--malloc",
        choices=("dask", "glibc"),
        default="dask",
        help="workers' malloc tuning: distributed's default, or glibc's own (see README)",
    )
    parser.add_argument(
        "--plain-n", type=int, default=600, help="customers for the plain-Dask diagnostic (0: skip)"
    )
    parser.add_argument("--time-cost", type=int, help="argon2 t (default: OWASP's 2)")
    parser.add_argument("--memory-kib", type=int, help="argon2 m in KiB (default: 19456)")
    parser.add_argument("--workdir", type=Path, help="keep files here instead of a temp dir")
    args = parser.parse_args(argv)

    with scratch_dir("dask", args.workdir) as work:
        # Before Prefect is imported: a private home; hashing at the cost given (OWASP unless
        # told otherwise), whatever the caller's environment says.
        set_env({"PREFECT_HOME": str(work / "prefect-home")})
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        for name in ARGON2_VARIABLES:
            os.environ.pop(name, None)
        if args.time_cost:
            set_env({"ROLLOUT_ARGON2_TIME_COST": str(args.time_cost)})
        if args.memory_kib:
            set_env({"ROLLOUT_ARGON2_MEMORY_KIB": str(args.memory_kib)})
        set_env(bench_keys_env())  # a real PIN run needs a pepper and a seal key per brand
        import flows  # noqa: F401 - sets Prefect's offline defaults
        from rollout.brands import load_brand
        from rollout.exports import export_path
        from rollout.pins import PinHasher
        from synthetic import write_synthetic_export

        params = PinHasher.from_env().params
        print(machine_line())
        print(
            f"N={args.n} customers, chunk size {args.chunk_size} "
            f"({-(-args.n // args.chunk_size)} tasks), argon2id t={params.time_cost}, "
            f"m={params.memory_kib} KiB, p={params.parallelism}; Prefect API: {args.api}"
        )
        exports = work / "exports"
        exports.mkdir()
        brand = load_brand("congstar")
        write_synthetic_export(
            export_path(exports, brand), args.n, seed=4, bad_row_share=0.0, hashed_share=0.0
        )

        seconds: dict[int, float] = {}
        with prefect_api(args.api) as api_url:
            for k in args.workers:
                seconds[k] = run_flow(k, args, api_url, work, exports)

        plain: dict[tuple[int, int | None], float] = {}
        if args.plain_n:
            section(f"diagnostic: plain Dask, no Prefect, {args.plain_n} PINs")
            for threads in (1, None):
                for k in args.workers:
                    plain[(k, threads)] = run_plain(
                        k, args.plain_n, args.chunk_size, threads, args.malloc
                    )

    section("results")
    for k, s in seconds.items():
        print(f"flow, {k} worker(s): {s:.1f} s = {rate(args.n, s):,.1f} hashes/s")
    lo, hi = min(seconds), max(seconds)
    for threads in (1, None):
        if (lo, threads) in plain and (hi, threads) in plain:
            label = "threads=1" if threads == 1 else "threads=None"
            speedup = plain[(lo, threads)] / plain[(hi, threads)]
            print(f"plain Dask speed-up, {hi} vs {lo} worker(s), {label}: {speedup:.2f}x")
    print(load_line())
    headline(f"dask_speedup_{hi}_workers", seconds[lo] / seconds[hi])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
