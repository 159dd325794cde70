"""The PIN stage's hashing rate against the ideal: every core hashing flat out.

    .venv/bin/python bench/hashing.py [--n 2000] [--single 100] [--threads N]
                                      [--backends sqlite postgresql]

Measures, all with the same argon2id parameters (default `HashParams()`: OWASP t=2, 19 MiB, p=1):

1. single: K PINs hashed one after another in one thread with `PinHasher.hash` (measured before
   and after the rest, to bracket the noise of a shared machine);
2. stage: the real PIN stage, `open_export` + `assign_pins` with `local_hash_map(hasher,
   threads=cores)` on a synthetic export of N customers of whom nobody has a hash yet, once per
   state backend and round: SQLite (a file in the stage's state dir) and PostgreSQL (a fresh
   database on a throw-away durable server, `tools/pg_server.py`, fsync on as on a real one);
   the time spent in state DB calls is shown per call, and the share of threads x wall the
   hashing threads spent inside argon2 (what the rest of the stage leaves to hashing; a
   preempted thread still counts as hashing, so it hardly depends on the machine's load);
3. new_pin_hashes: the batch function alone on N customers, `threads=cores`;
4. balanced (diagnostic): the same N PINs spread over the threads a few at a time from a shared
   queue instead of one fixed contiguous slice per thread, to show what static slicing costs
   when another process takes a core for a while;
5. sealing: `PinSealer.seal` (HPKE, X25519 + AES-128-GCM) per PIN in one thread, and its share
   of one argon2id hash (target < 2 %). Stage and new_pin_hashes seal as the pipeline does.

ideal = cores x single rate; ratio = actual / ideal (target >= 0.9).
A table shows the backends side by side; one line per backend,
``hashing_efficiency_<backend>: 0.93x``, comes before the headline, the worst of them:
``hashing_efficiency: 0.92x`` (stage / ideal).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psutil
from _common import (
    Timer,
    cores,
    headline,
    load_line,
    machine_line,
    rate,
    rate_line,
    ratio_line,
    scratch_dir,
    section,
)

from pg_server import PgServer, PgServerError, find_bindir
from rollout.assign import assign_pins, local_hash_map
from rollout.brands import load_brand
from rollout.exports import export_path, open_export
from rollout.pins import HashParams, PinHasher, SecretPin, generate_pin, new_pin_hashes
from rollout.seal import PinSealer, new_key_pair
from rollout.state import StateStore
from rollout.state.connect import state_url
from synthetic import write_synthetic_export

TARGET = 0.9
SEAL_SHARE_TARGET = 0.02
SEALER = PinSealer("congstar", "bench", new_key_pair()[1])
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class TracingHasher(PinHasher):
    """A `PinHasher` that notes which thread hashed when (diagnostics; adds ~1 µs a hash)."""

    calls: list[tuple[int, float, float]] = field(default_factory=list, compare=False)

    def hash(self, pin: SecretPin, customer_id: str) -> str:
        start = time.perf_counter()
        try:
            return super().hash(pin, customer_id)
        finally:
            self.calls.append((threading.get_ident(), start, time.perf_counter()))

    def outside(self, t0: float, wall: float) -> float:
        """Seconds of `wall` (from `t0`) before the first hash began and after the last ended."""
        if not self.calls:
            return wall
        first_start = min(start for _, start, _ in self.calls) - t0
        return first_start + (wall - (max(end for _, _, end in self.calls) - t0))

    def inside(self, wall: float, threads: int) -> float:
        """The share of threads x wall spent inside `hash`: what the rest of the stage leaves
        to hashing. A thread the OS preempts mid-hash still counts as hashing, so, unlike the
        rates, this hardly depends on what else the machine runs."""
        busy = sum(end - start for _, start, end in self.calls)
        return busy / (threads * wall) if wall > 0 else 0.0

    def report(self, t0: float, wall: float, threads: int) -> str:
        """When each thread ended its last hash, and the time spent outside hashing."""
        outside = self.outside(t0, wall)
        calls, self.calls[:] = list(self.calls), []
        if not calls:
            return "no hashes traced"
        last: dict[int, float] = {}
        for ident, _, end in calls:
            last[ident] = max(last.get(ident, 0.0), end - t0)
        ends = sorted(last.values())
        idle = sum(ends[-1] - e for e in ends) + threads * outside
        shown = ", ".join(f"{e:.1f}" for e in ends)
        return (
            f"threads ended their last hash at {shown} s (of {wall:.1f} s); "
            f"{outside:.2f} s outside hashing; "
            f"{idle / (threads * wall):.0%} of {threads} x wall left idle by the threads"
        )


def single_thread_rate(hasher: PinHasher, k: int) -> tuple[float, Timer]:
    """Hashes per second of `PinHasher.hash` in this one thread (PINs drawn beforehand)."""
    pins = [(generate_pin(None), f"C{i:09d}") for i in range(k)]
    with Timer() as t:
        for pin, customer_id in pins:
            hasher.hash(pin, customer_id)
    return rate(k, t.seconds), t


class TimedStore(StateStore):
    """A `StateStore` that adds up the wall time of each call the PIN stage makes (opening,
    reading what is known, recording chunks): the state DB's share of the stage."""

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        with self._timed("open (schema)"):
            super().__init__(url, read_only)

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - start
            self.calls[name] = self.calls.get(name, 0) + 1

    def forget_rejects(self, brand: str) -> None:
        with self._timed("forget_rejects"):
            super().forget_rejects(brand)

    def known_hashes(self, brand: str, customer_ids: Sequence[str]) -> Any:
        with self._timed("known_hashes"):
            return super().known_hashes(brand, customer_ids)

    def sealed_among(self, brand: str, customer_ids: Sequence[str]) -> Any:
        with self._timed("sealed_among"):
            return super().sealed_among(brand, customer_ids)

    def record_chunk(self, brand: str, customers: Any, rejects: Any) -> None:
        with self._timed("record_chunk"):
            super().record_chunk(brand, customers, rejects)

    def rejects(self, brand: str) -> Any:
        with self._timed("rejects"):
            return super().rejects(brand)

    @property
    def total(self) -> float:
        return sum(self.spent.values())

    def breakdown(self) -> str:
        parts = ", ".join(
            f"{name} {seconds * 1e3:,.0f} ms ({self.calls[name]}x)"
            for name, seconds in self.spent.items()
        )
        return f"state DB calls {self.total:.2f} s: {parts}"


def _cpu_by_pid(server: PgServer) -> dict[int, float]:
    """CPU seconds (user + system) of the server's postmaster and every process under it."""
    pid_file = server.socket_dir / "data" / "postmaster.pid"
    postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
    seen: dict[int, float] = {}
    for proc in (postmaster, *postmaster.children(recursive=True)):
        try:
            cpu = proc.cpu_times()
        except psutil.Error:
            continue
        seen[proc.pid] = cpu.user + cpu.system
    return seen


def stop_quietly(server: PgServer) -> None:
    """Stop the server; if that fails, say so rather than lose the figures measured by then.

    Something on a shared machine may sweep /tmp and delete the server's temp dir while it
    runs (seen once): `pg_ctl stop` then fails, and the postmaster, its pid file gone, shuts
    itself down.
    """
    try:
        server.stop()
    except (OSError, PgServerError) as error:
        print(f"note: stopping the PostgreSQL server failed: {error!r}", flush=True)


@dataclass
class Backend:
    """Where a stage run keeps its state: SQLite in its state dir, or a fresh PostgreSQL DB."""

    name: str
    server: PgServer | None = None
    databases: int = 0

    def store(self, state_dir: Path) -> TimedStore:
        if self.server is None:
            return TimedStore(state_url(state_dir))
        self.databases += 1
        url = self.server.create_database(f"bench_hashing_{self.databases}")
        return TimedStore(url)  # the password: PGPASSWORD, set when the server started

    def server_cpu(self) -> dict[int, float]:
        return _cpu_by_pid(self.server) if self.server is not None else {}


@dataclass
class StageRun:
    """One timed PIN stage: the timer, the state DB's share, the server's CPU, idle threads."""

    timer: Timer
    db_seconds: float
    db_breakdown: str
    server_cpu: float | None
    outside: float
    inside: float  # share of threads x wall inside argon2 (TracingHasher.inside)


def stage_run(
    hasher: TracingHasher, n: int, threads: int, chunk_size: int, work: Path, backend: Backend
) -> StageRun:
    """The PIN stage on a fresh synthetic export where all `n` customers need a PIN."""
    brand = load_brand("congstar")
    exports, state_dir = work / "exports", work / "state"
    exports.mkdir(parents=True)
    summary = write_synthetic_export(
        export_path(exports, brand), n, seed=1, bad_row_share=0.0, hashed_share=0.0
    )
    assert summary.accepted == n, summary
    cpu_before = backend.server_cpu()
    with Timer() as t:
        t0 = time.perf_counter()
        store = backend.store(state_dir)  # opening (and making the schema) counts
        try:
            export = open_export(export_path(exports, brand), brand)
            result = assign_pins(
                export,
                brand,
                store,
                state_dir,
                local_hash_map(hasher, threads, SEALER),
                chunk_size,
            )
        except BaseException:
            store.close()
            raise
    # Outside the timing, before the store closes: its server process still counts.
    cpu_after = backend.server_cpu()
    store.close()
    if result.generated != n:
        raise RuntimeError(f"expected {n} new PINs, the stage drew {result.generated}")
    server_cpu = None
    if backend.server is not None:
        server_cpu = sum(cpu - cpu_before.get(pid, 0.0) for pid, cpu in cpu_after.items())
    outside = hasher.outside(t0, t.seconds)
    inside = hasher.inside(t.seconds, threads)
    print(hasher.report(t0, t.seconds, threads))
    print(f"the threads spent {inside:.1%} of {threads} x wall inside argon2")
    print(store.breakdown())
    if server_cpu is not None:
        print(
            f"PostgreSQL server processes: {server_cpu:.2f} s CPU "
            f"= {server_cpu / t.seconds:.2f} cores over the stage"
        )
    return StageRun(t, store.total, store.breakdown(), server_cpu, outside, inside)


def customers(n: int) -> list[tuple[str, date | None]]:
    return [(f"C{i:09d}", date(1970 + i % 40, 1 + i % 12, 1 + i % 28)) for i in range(n)]


def balanced_hashes(
    batch: Sequence[tuple[str, date | None]], hasher: PinHasher, threads: int, step: int
) -> list[str]:
    """Like `new_pin_hashes`, but threads take `step` PINs at a time from a shared queue."""

    def part(start: int) -> list[str]:
        return [hasher.hash(generate_pin(b), cid) for cid, b in batch[start : start + step]]

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="balanced") as pool:
        return [h for hashes in pool.map(part, range(0, len(batch), step)) for h in hashes]


@dataclass
class Runs:
    """Repeated measurements of one variant: rates and the CPU the rest of the machine used."""

    label: str
    rates: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    stages: list[StageRun] = field(default_factory=list)  # the stage's runs: DB share etc.

    def add_stage(self, count: int, run: StageRun) -> None:
        self.add(count, run.timer)
        self.stages.append(run)

    def add(self, count: int, t: Timer) -> None:
        self.rates.append(rate(count, t.seconds))
        self.others.append(t.other_cores())
        print(f"{self.label}: {count} in {t.seconds:.2f} s = {self.rates[-1]:,.1f} hashes/s")
        print(f"  {t.cpu_note()}")

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def best_stage(self) -> StageRun:
        return self.stages[self.rates.index(self.best)]

    def summary(self, ideal: float, threads: int, single: float, target: float | None) -> None:
        label = f"{self.label} / ideal (best of {len(self.rates)})"
        print(ratio_line(label, self.best, ideal, target))
        for r, other in zip(self.rates, self.others, strict=True):
            usable = max(0.1, min(threads, cores() - other))
            print(
                f"  run: {r:,.1f} hashes/s = {r / ideal:.2f}x ideal; others used {other:.2f} "
                f"cores; vs {usable:.2f} cores left to us: {r / (single * usable):.2f}x"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="customers in the PIN stage")
    parser.add_argument("--single", type=int, default=100, help="PINs for the single-thread rate")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of stage/alone/balanced")
    parser.add_argument("--threads", type=int, default=cores(), help="default: usable cores")
    parser.add_argument("--chunk-size", type=int, default=20_000, help="assign_pins chunk size")
    parser.add_argument("--time-cost", type=int, default=HashParams().time_cost)
    parser.add_argument("--memory-kib", type=int, default=HashParams().memory_kib)
    parser.add_argument("--parallelism", type=int, default=HashParams().parallelism)
    parser.add_argument("--no-balanced", action="store_true", help="skip the diagnostic runs")
    parser.add_argument("--workdir", type=Path, help="keep files here instead of a temp dir")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS) if find_bindir() else ["sqlite"],
        help="state DBs for the stage (default: both if PostgreSQL's binaries are found; "
        "PostgreSQL runs on a throw-away durable server, tools/pg_server.py)",
    )
    args = parser.parse_args(argv)
    names: list[str] = list(dict.fromkeys(args.backends))

    params = HashParams(args.time_cost, args.memory_kib, args.parallelism)
    hasher = TracingHasher(params)
    threads = args.threads
    print(machine_line())
    print(
        f"argon2id t={params.time_cost}, m={params.memory_kib} KiB, p={params.parallelism}; "
        f"N={args.n} customers, K={args.single} single-thread hashes, {threads} threads, "
        f"{args.repeat} rounds; state backends: {', '.join(names)}"
    )
    if "postgresql" not in names and find_bindir() is None:
        print("no PostgreSQL binaries found (tools/pg_server.py --bindir): SQLite only")
    hasher.hash(SecretPin("4711"), "warm-up")

    section("single thread (before)")
    single_before, t = single_thread_rate(hasher, args.single)
    print(rate_line("PinHasher.hash, 1 thread", args.single, t.seconds, " hashes/s"))
    print(f"  {t.cpu_note()}")
    hasher.calls.clear()

    stages = {name: Runs(f"stage {name}") for name in names}
    alone, balanced = Runs("new_pin_hashes"), Runs("balanced")
    batch = customers(args.n)
    with ExitStack() as stack:
        work = stack.enter_context(scratch_dir("hashing", args.workdir))
        backends = [Backend(name) for name in names]
        for backend in backends:
            if backend.name == "postgresql":
                started = time.perf_counter()
                backend.server = PgServer(durable=True)
                backend.server.start()
                os.environ.update(backend.server.env)  # PGPASSWORD, as for any rollout run
                stack.callback(stop_quietly, backend.server)
                print(
                    f"PostgreSQL from {backend.server.bindir}, durable (fsync on), up in "
                    f"{time.perf_counter() - started:.1f} s; a fresh database per stage run"
                )
        for round_ in range(1, args.repeat + 1):
            # Alternate the order, so neither backend always runs first in a round.
            for backend in backends if round_ % 2 else backends[::-1]:
                section(
                    f"round {round_}: PIN stage on {backend.name}, "
                    "open_export + assign_pins(local_hash_map)"
                )
                where = work / f"{round_}-{backend.name}"
                run = stage_run(hasher, args.n, threads, args.chunk_size, where, backend)
                stages[backend.name].add_stage(args.n, run)

            section(f"round {round_}: new_pin_hashes alone")
            with Timer() as t:
                t0 = time.perf_counter()
                new_pin_hashes(batch, hasher, threads, SEALER)
            print(hasher.report(t0, t.seconds, threads))
            alone.add(args.n, t)

            if not args.no_balanced:
                section(f"round {round_}: diagnostic, balanced work sharing (8 PINs per pick)")
                with Timer() as t:
                    t0 = time.perf_counter()
                    balanced_hashes(batch, hasher, threads, step=8)
                print(hasher.report(t0, t.seconds, threads))
                balanced.add(args.n, t)

    section("single thread (after)")
    single_after, t = single_thread_rate(hasher, args.single)
    print(rate_line("PinHasher.hash, 1 thread", args.single, t.seconds, " hashes/s"))
    print(f"  {t.cpu_note()}")

    section("sealing, 1 thread")
    # CPU time of this thread, so the share does not depend on what else the machine runs.
    seal_n = max(2_000, 20 * args.single)
    sealing = [(generate_pin(None), f"C{i:09d}") for i in range(seal_n)]
    cpu = time.thread_time()
    with Timer() as t:
        for pin, customer_id in sealing:
            SEALER.seal(pin, customer_id)
    seal_seconds = (time.thread_time() - cpu) / seal_n
    print(rate_line("PinSealer.seal, 1 thread", seal_n, t.seconds, " seals/s (wall)"))
    print(f"  {t.cpu_note()}")
    hash_n = max(20, args.single // 2)
    cpu = time.thread_time()
    for pin, customer_id in sealing[:hash_n]:
        hasher.hash(pin, customer_id)
    hash_seconds = (time.thread_time() - cpu) / hash_n
    hasher.calls.clear()
    print(
        f"CPU per PIN: seal {seal_seconds * 1e6:,.0f} µs, argon2id hash "
        f"{hash_seconds * 1e3:,.1f} ms ({hash_n} hashes)"
    )

    section("results")
    single = max(single_before, single_after)
    ideal = threads * single
    spread = abs(single_before - single_after) / single * 100
    print(
        f"single-thread rate: {single:,.1f} hashes/s, the faster of before {single_before:,.1f} "
        f"and after {single_after:,.1f} ({spread:.0f} % apart)"
    )
    print(f"ideal = {threads} threads x {single:,.1f} = {ideal:,.1f} hashes/s")
    alone.summary(ideal, threads, single, TARGET)
    if balanced.rates:
        balanced.summary(ideal, threads, single, None)
        print(ratio_line("new_pin_hashes / balanced (best)", alone.best, balanced.best))
    for runs in stages.values():
        runs.summary(ideal, threads, single, TARGET)
    share = seal_seconds / hash_seconds
    verdict = "met" if share < SEAL_SHARE_TARGET else "NOT met"
    print(
        f"sealing: {seal_seconds * 1e6:,.0f} µs CPU per PIN = {share:.2%} of one argon2id hash "
        f"({hash_seconds * 1e3:,.1f} ms CPU); target < {SEAL_SHARE_TARGET:.0%}: {verdict}"
    )
    side_by_side(stages, ideal)
    print(load_line())
    for name, runs in stages.items():
        print(f"hashing_efficiency_{name}: {runs.best / ideal:.2f}x")
    headline("hashing_efficiency", min(runs.best for runs in stages.values()) / ideal)
    return 0


def side_by_side(stages: dict[str, Runs], ideal: float) -> None:
    """The stage's figures per backend in columns (the best run of each)."""
    names = list(stages)

    def cells(figure: Callable[[Runs, StageRun], str]) -> list[str]:
        return [figure(stages[name], stages[name].best_stage) for name in names]

    rows: list[tuple[str, list[str]]] = [
        ("stage, best run (hashes/s)", cells(lambda r, _: f"{r.best:,.1f}")),
        ("ideal (hashes/s)", [f"{ideal:,.1f}"] * len(names)),
        ("stage / ideal, best", cells(lambda r, _: f"{r.best / ideal:.2f}x")),
        (
            "stage / ideal, every run",
            cells(lambda r, _: " ".join(f"{x / ideal:.2f}" for x in r.rates)),
        ),
        ("wall of the best run (s)", cells(lambda _, s: f"{s.timer.seconds:.2f}")),
        ("  outside hashing (s)", cells(lambda _, s: f"{s.outside:.2f}")),
        ("  threads inside argon2", cells(lambda _, s: f"{s.inside:.1%}")),
        ("  in state DB calls (s)", cells(lambda _, s: f"{s.db_seconds:.2f}")),
        (
            "  DB server CPU (s)",
            cells(lambda _, s: "in-process" if s.server_cpu is None else f"{s.server_cpu:.2f}"),
        ),
        ("everything else (cores)", cells(lambda _, s: f"{s.timer.other_cores():.2f}")),
    ]
    width = max(len(label) for label, _ in rows)
    widths = [
        max(len(name), *(len(values[i]) for _, values in rows)) for i, name in enumerate(names)
    ]
    section("PIN stage by state backend (best run of each)")
    print(" | ".join([" " * width, *(n.rjust(w) for n, w in zip(names, widths, strict=True))]))
    print("-+-".join(["-" * width, *("-" * w for w in widths)]))
    for label, values in rows:
        print(
            " | ".join(
                [label.ljust(width), *(v.rjust(w) for v, w in zip(values, widths, strict=True))]
            )
        )


if __name__ == "__main__":
    raise SystemExit(main())
