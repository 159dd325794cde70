"""Peak memory and wall time of the PIN stage on large exports: does memory stay flat with rows?

    .venv/bin/python bench/scale.py [--rows 100000 1000000] [--chunk-size 20000]

For each size, a synthetic congstar export (`tools/synthetic.py`: `write_synthetic_export`, default
shares: 10 % already hashed, 0.1 % bad rows, 1.5 % without a usable address) is generated in one
subprocess, then measured in a fresh one: `open_export` + `assign_pins` (the core, no Prefect)
with `local_hash_map(hasher, threads=cores)`, into an empty state dir. argon2id is made cheap
(t=1, m=64 KiB, p=1, as in the test suite): this is about memory and the non-hashing work, not
about argon2 (see bench/hashing.py for that).

Memory is reported three ways:
- sampled peak: VmRSS read every 20 ms by a thread during the stage only (imports excluded);
- exact peak: the kernel's VmHWM, reset at the start of the stage (and at each phase), so it
  cannot miss a short spike as sampling can;
- ru_maxrss of the measuring process (whole life: imports too, but no export generation);
- ru_maxrss of the generating process, i.e. what would pollute ru_maxrss had the export been
  generated in the measuring process.

Target: sampled peak under 500 MB at 1,000,000 rows, and no growth with rows.
Headline: ``scale_peak_rss_mb: N`` (the highest stage peak over the sizes run, in MB = 10^6 B;
the VmHWM figure where the kernel allows resetting it, else the sampled one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from _common import (
    CHEAP_ARGON2,
    RssSampler,
    Timer,
    cores,
    headline,
    load_line,
    machine_line,
    ru_maxrss_mb,
    scratch_dir,
    section,
)

TARGET_MB = 500.0
MIB_PER_MB = 1e6 / 2**20  # the target is in MB (10^6 bytes); VmRSS is in KiB


def generate(path: Path, rows: int) -> dict[str, float]:
    """In the child: write the export; report this process's own peak."""
    from synthetic import write_synthetic_export

    path.parent.mkdir(parents=True, exist_ok=True)
    with Timer() as t:
        summary = write_synthetic_export(path, rows, seed=3)
    return {
        "seconds": t.seconds,
        "ru_maxrss_mb": ru_maxrss_mb(),
        "accepted": summary.accepted,
        "hashed": summary.hashed,
        "bytes": path.stat().st_size,
    }


def measure(exports: Path, state_dir: Path, chunk_size: int, threads: int) -> dict[str, object]:
    """In the child: the PIN stage under an RSS sampler."""
    from rollout.assign import assign_pins, local_hash_map
    from rollout.brands import load_brand
    from rollout.exports import export_path, open_export
    from rollout.pins import PinHasher
    from rollout.state import StateStore

    brand = load_brand("congstar")
    hasher = PinHasher.from_env()
    # Resetting VmHWM (RssSampler) also resets what ru_maxrss reports from then on: keep the
    # value from before, so the whole life's peak is max(this, the per-phase VmHWMs).
    ru_before = ru_maxrss_mb()
    with RssSampler() as rss, Timer() as t:
        rss.mark("open_export")
        export = open_export(export_path(exports, brand), brand)
        rss.mark("assign_pins")
        with StateStore.in_dir(state_dir) as store:
            summary = assign_pins(
                export, brand, store, state_dir, local_hash_map(hasher, threads), chunk_size
            )
    params = hasher.params
    db = state_dir / "state.sqlite3"
    return {
        "argon2": f"t={params.time_cost}, m={params.memory_kib} KiB, p={params.parallelism}",
        "seconds": t.seconds,
        "busy_cores": t.busy_cores(),
        "other_cores": t.other_cores(),
        "rows_read": summary.rows_read,
        "generated": summary.generated,
        "kept": summary.kept,
        "rss_start_mb": rss.start_mb,
        "sampled_peak_mb": rss.peak_mb,
        "peak_mb": rss.exact_peak_mb or rss.peak_mb,
        "exact_peaks": rss.exact_peaks,
        "peak_open_export_mb": rss.peak_of("open_export"),
        "peak_assign_pins_mb": rss.peak_of("assign_pins"),
        "profile": rss.profile(10),
        "ru_maxrss_mb": max(ru_before, ru_maxrss_mb(), *rss.exact_peaks.values()),
        "writeback_bytes": Path(summary.writeback).stat().st_size,
        "db_bytes": db.stat().st_size + _size(db.with_name(db.name + "-wal")),
    }


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def child(args: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run this script in a fresh interpreter; its last stdout line is a JSON result."""
    done = subprocess.run(
        [sys.executable, __file__, *args],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def fmt_mb(mib: object) -> str:
    assert isinstance(mib, float | int)
    return f"{mib:,.0f} MiB ({mib / MIB_PER_MB:,.0f} MB)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="export sizes to run"
    )
    parser.add_argument("--chunk-size", type=int, default=20_000, help="assign_pins chunk size")
    parser.add_argument("--threads", type=int, default=cores(), help="hashing threads")
    parser.add_argument("--time-cost", type=int, help="argon2 t (default: the cheap test cost)")
    parser.add_argument("--memory-kib", type=int, help="argon2 m in KiB (both, or neither)")
    parser.add_argument("--workdir", type=Path, help="keep files here instead of a temp dir")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)

    if args.child:
        mode, *rest = args.child
        if mode == "generate":
            result: dict[str, object] = dict(generate(Path(rest[0]), int(rest[1])))
        else:
            result = measure(Path(rest[0]), Path(rest[1]), args.chunk_size, args.threads)
        print(json.dumps(result))
        return 0

    cost = (
        CHEAP_ARGON2
        if args.time_cost is None and args.memory_kib is None
        else {
            "ROLLOUT_ARGON2_TIME_COST": str(args.time_cost or 2),
            "ROLLOUT_ARGON2_MEMORY_KIB": str(args.memory_kib or 19_456),
        }
    )
    env = {**os.environ, **cost}
    print(machine_line())
    print(
        f"chunk size {args.chunk_size}, {args.threads} hashing threads, argon2id "
        f"{'t=1, m=64 KiB (cheap on purpose)' if cost is CHEAP_ARGON2 else cost}, p=1"
    )
    results: dict[int, dict[str, object]] = {}
    started = time.perf_counter()
    with scratch_dir("scale", args.workdir) as work:
        for rows in sorted(args.rows):
            section(f"{rows:,} rows")
            exports, state_dir = work / str(rows) / "exports", work / str(rows) / "state"
            gen = child(["--child", "generate", str(exports / "congstar.csv"), str(rows)], env)
            print(
                f"generated in a subprocess: {gen['bytes']:,} bytes in {gen['seconds']:.1f} s, "
                f"generator ru_maxrss {fmt_mb(gen['ru_maxrss_mb'])}"
            )
            common = ["--chunk-size", str(args.chunk_size), "--threads", str(args.threads)]
            r = child([*common, "--child", "measure", str(exports), str(state_dir)], env)
            r["generator_ru_maxrss_mb"] = gen["ru_maxrss_mb"]
            results[rows] = r
            seconds = float(r["seconds"])  # type: ignore[arg-type]
            print(
                f"stage: {r['rows_read']:,} rows ({r['generated']:,} new PINs, {r['kept']:,} "
                f"kept) in {seconds:.1f} s = {rows / seconds:,.0f} rows/s; "
                f"this process kept {r['busy_cores']:.2f} cores busy, everything else "
                f"{r['other_cores']:.2f}"
            )
            print(f"RSS at start (after imports): {fmt_mb(r['rss_start_mb'])}")
            exact = r["exact_peaks"]
            assert isinstance(exact, dict)
            for phase in ("open_export", "assign_pins"):
                sampled = fmt_mb(r[f"peak_{phase}_mb"])
                hwm = f", VmHWM {fmt_mb(exact[phase])}" if phase in exact else ""
                print(f"peak during {phase}: sampled {sampled}{hwm}")
            print(f"ru_maxrss (measuring child):  {fmt_mb(r['ru_maxrss_mb'])}")
            profile = r["profile"]
            assert isinstance(profile, list)
            print(
                "RSS peak per tenth of the run: "
                + ", ".join(f"{mb:.0f}" for _, mb in profile)
                + " MiB"
            )
            print(
                f"on disk: write-back {r['writeback_bytes']:,} bytes, "
                f"state DB {r['db_bytes']:,} bytes"
            )

    section("results")
    print(
        f"{'rows':>10} {'wall s':>8} {'rows/s':>8} {'peak':>6} {'sampled':>8} "
        f"{'ru_maxrss':>10} {'gen.':>6}"
    )
    for rows, r in results.items():
        seconds = float(r["seconds"])  # type: ignore[arg-type]
        print(
            f"{rows:>10,} {seconds:>8.1f} {rows / seconds:>8,.0f} {r['peak_mb']:>6.0f} "
            f"{r['sampled_peak_mb']:>8.0f} {r['ru_maxrss_mb']:>10.0f} "
            f"{r['generator_ru_maxrss_mb']:>6.0f}"
        )
    print("all MiB. peak = VmHWM over the stage alone (reset at its start); sampled = highest")
    print("VmRSS read every 20 ms during the stage; ru_maxrss = the measuring child's whole life")
    print("(imports included); gen. = the generating child's ru_maxrss: the pollution avoided")
    peaks = {rows: float(r["peak_mb"]) for rows, r in results.items()}  # type: ignore[arg-type]
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        growth = peaks[large] - peaks[small]
        print(
            f"peak grew {growth:+,.0f} MiB from {small:,} to {large:,} rows "
            f"({growth / (large - small) * 1e6:+,.1f} MiB per million rows)"
        )
    worst = max(peaks.values())
    verdict = "met" if worst / MIB_PER_MB < TARGET_MB else "MISSED"
    print(f"highest stage peak {fmt_mb(worst)}: target < {TARGET_MB:.0f} MB {verdict}")
    print(f"whole benchmark took {time.perf_counter() - started:.0f} s")
    print(load_line())
    headline("scale_peak_rss_mb", worst / MIB_PER_MB, unit="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
