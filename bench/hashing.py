"""The PIN stage's hashing rate against the ideal: every core hashing flat out.

    .venv/bin/python bench/hashing.py [--n 2000] [--single 100] [--threads N]

Measures, all with the same argon2id parameters (default `HashParams()`: OWASP t=2, 19 MiB, p=1):

1. single: K PINs hashed one after another in one thread with `PinHasher.hash` (measured before
   and after the rest, to bracket the noise of a shared machine);
2. stage: the real PIN stage, `open_export` + `assign_pins` with `local_hash_map(hasher,
   threads=cores)` on a synthetic export of N customers of whom nobody has a hash yet;
3. new_pin_hashes: the batch function alone on N customers, `threads=cores`;
4. balanced (diagnostic): the same N PINs spread over the threads a few at a time from a shared
   queue instead of one fixed contiguous slice per thread, to show what static slicing costs
   when another process takes a core for a while;
5. sealing: `PinSealer.seal` (HPKE, X25519 + AES-128-GCM) per PIN in one thread, and its share
   of one argon2id hash (target < 2 %). Stage and new_pin_hashes seal as the pipeline does.

ideal = cores x single rate; ratio = actual / ideal (target >= 0.9).
Headline: ``hashing_efficiency: 0.93x`` (stage / ideal).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

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

from rollout.assign import assign_pins, local_hash_map
from rollout.brands import load_brand
from rollout.exports import export_path, open_export
from rollout.pins import HashParams, PinHasher, SecretPin, generate_pin, new_pin_hashes
from rollout.seal import PinSealer, new_key_pair
from rollout.state import StateStore
from synthetic import write_synthetic_export

TARGET = 0.9
SEAL_SHARE_TARGET = 0.02
SEALER = PinSealer("congstar", "bench", new_key_pair()[1])


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

    def report(self, t0: float, wall: float, threads: int) -> str:
        """When each thread ended its last hash, and the time spent outside hashing."""
        calls, self.calls[:] = list(self.calls), []
        if not calls:
            return "no hashes traced"
        last: dict[int, float] = {}
        for ident, _, end in calls:
            last[ident] = max(last.get(ident, 0.0), end - t0)
        ends = sorted(last.values())
        first_start = min(start for _, start, _ in calls) - t0
        outside = first_start + (wall - ends[-1])
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


def stage_run(hasher: PinHasher, n: int, threads: int, chunk_size: int, work: Path) -> Timer:
    """The PIN stage on a fresh synthetic export where all `n` customers need a PIN."""
    brand = load_brand("congstar")
    exports, state_dir = work / "exports", work / "state"
    exports.mkdir(parents=True)
    summary = write_synthetic_export(
        export_path(exports, brand), n, seed=1, bad_row_share=0.0, hashed_share=0.0
    )
    assert summary.accepted == n, summary
    with Timer() as t, StateStore.in_dir(state_dir) as store:
        t0 = time.perf_counter()
        export = open_export(export_path(exports, brand), brand)
        result = assign_pins(
            export, brand, store, state_dir, local_hash_map(hasher, threads, SEALER), chunk_size
        )
    if result.generated != n:
        raise RuntimeError(f"expected {n} new PINs, the stage drew {result.generated}")
    if isinstance(hasher, TracingHasher):
        print(hasher.report(t0, t.seconds, threads))
    return t


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

    def add(self, count: int, t: Timer) -> None:
        self.rates.append(rate(count, t.seconds))
        self.others.append(t.other_cores())
        print(f"{self.label}: {count} in {t.seconds:.2f} s = {self.rates[-1]:,.1f} hashes/s")
        print(f"  {t.cpu_note()}")

    @property
    def best(self) -> float:
        return max(self.rates)

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
    args = parser.parse_args(argv)

    params = HashParams(args.time_cost, args.memory_kib, args.parallelism)
    hasher = TracingHasher(params)
    threads = args.threads
    print(machine_line())
    print(
        f"argon2id t={params.time_cost}, m={params.memory_kib} KiB, p={params.parallelism}; "
        f"N={args.n} customers, K={args.single} single-thread hashes, {threads} threads, "
        f"{args.repeat} rounds"
    )
    hasher.hash(SecretPin("4711"), "warm-up")

    section("single thread (before)")
    single_before, t = single_thread_rate(hasher, args.single)
    print(rate_line("PinHasher.hash, 1 thread", args.single, t.seconds, " hashes/s"))
    print(f"  {t.cpu_note()}")
    hasher.calls.clear()

    stage, alone = Runs("stage"), Runs("new_pin_hashes")
    balanced = Runs("balanced")
    batch = customers(args.n)
    with scratch_dir("hashing", args.workdir) as work:
        for round_ in range(1, args.repeat + 1):
            section(f"round {round_}: PIN stage, open_export + assign_pins(local_hash_map)")
            where = work / str(round_)
            stage.add(args.n, stage_run(hasher, args.n, threads, args.chunk_size, where))

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
    stage.summary(ideal, threads, single, TARGET)
    share = seal_seconds / hash_seconds
    verdict = "met" if share < SEAL_SHARE_TARGET else "NOT met"
    print(
        f"sealing: {seal_seconds * 1e6:,.0f} µs CPU per PIN = {share:.2%} of one argon2id hash "
        f"({hash_seconds * 1e3:,.1f} ms CPU); target < {SEAL_SHARE_TARGET:.0%}: {verdict}"
    )
    print(load_line())
    headline("hashing_efficiency", stage.best / ideal)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
