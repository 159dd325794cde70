"""Helpers shared by the benchmark scripts: timing, RSS sampling, result lines, scratch dirs.

Every script prints its figures, then its headline as the last line, ``name: value``.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# tools/ (the synthetic export generator, the SMTP sink) is not installed with the package; every
# script imports this module first, as tests get tools/ from pytest's `pythonpath`.
sys.path.insert(0, str(REPO / "tools"))

# argon2id cost for benchmarks that are not about hashing: the one test-only switch, as the test
# suite uses it (t=1, 64 KiB; a cost below OWASP's is refused otherwise).
CHEAP_ARGON2 = {"ROLLOUT_TEST_ONLY_CHEAP_ARGON2": "1"}


def bench_keys_env() -> dict[str, str]:
    """A fresh pepper and seal key (public half only) per brand, as a real PIN run needs them."""
    import base64
    import secrets

    from rollout.brands import brand_slugs, load_brand
    from rollout.seal import new_key_pair

    env: dict[str, str] = {}
    for slug in brand_slugs():
        names = load_brand(slug).secret_names
        env[names.pepper] = secrets.token_hex(32)
        env[names.pepper_id] = "bench"
        env[names.seal_key] = base64.b64encode(new_key_pair()[1]).decode()
        env[names.seal_key_id] = "bench"
    return env


def cores() -> int:
    """CPUs this process may run on (what a thread pool can actually use)."""
    return len(os.sched_getaffinity(0))


def machine_line() -> str:
    """Cores, load and Python, so a reader can judge how noisy the figures are."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cores()} cores usable (os.cpu_count()={os.cpu_count()}), "
        f"load average {load}, Python {platform.python_version()}"
    )


@dataclass(frozen=True)
class Placement:
    """Which CPUs the relay stand-in gets, and which everything else (this process, a DB
    server): `split()` gives the sink CPUs of its own."""

    relay: frozenset[int]
    rest: frozenset[int]

    @classmethod
    def split(cls) -> Placement | None:
        """The last usable CPU for the relay, the others for the rest; None with one CPU."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return None
        return cls(frozenset(cpus[-1:]), frozenset(cpus[:-1]))

    def __str__(self) -> str:
        return f"the SMTP sink on CPU {_cpus(self.relay)}, the rest on CPU {_cpus(self.rest)}"


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def pin(pids: list[int], cpus: frozenset[int]) -> None:
    """Keep these processes on `cpus` (children forked later inherit it)."""
    for pid in pids:
        try:
            os.sched_setaffinity(pid, cpus)
        except ProcessLookupError:
            continue  # exited meanwhile


def load_line() -> str:
    return "load average now: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


_TICKS = os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time spent by every process on the machine since boot (/proc/stat, not idle)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / _TICKS


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): field 3 onwards."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        return f.read().rsplit(")", 1)[1].split()


def child_pids(pid: int) -> list[int]:
    """The live children of a process (from /proc: each one's parent pid)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) == pid:
                found.append(int(entry))
        except OSError:
            continue  # gone meanwhile
    return found


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children: the live ones, and the exited ones it reaped
    (cutime, cstime). A server such as PostgreSQL's postmaster reaps its backends, so the
    difference between two calls is what the server spent in between (a child that exits but
    is not yet reaped is missed)."""

    def own_and_reaped(fields: list[str]) -> int:
        return sum(int(x) for x in fields[11:15])  # utime stime cutime cstime

    try:
        ticks = own_and_reaped(_stat_fields(pid))
    except OSError:
        return 0.0
    for child in child_pids(pid):
        try:
            ticks += own_and_reaped(_stat_fields(child))
        except OSError:
            continue  # exited meanwhile
    return ticks / _TICKS


@dataclass
class Timer:
    """Wall time and CPU time of a `with` block: this process's (all threads) and the machine's.

    `other_cores()` is how many cores the rest of the machine kept busy meanwhile (noise).
    """

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    machine_cpu_seconds: float = 0.0
    _start: float = 0.0
    _cpu_start: float = 0.0
    _machine_start: float = 0.0

    def __enter__(self) -> Timer:
        self._machine_start = machine_cpu_seconds()
        self._cpu_start = time.process_time()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu_start
        self.machine_cpu_seconds = machine_cpu_seconds() - self._machine_start

    def busy_cores(self) -> float:
        """CPU seconds per wall second: how many cores this process kept busy on average."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    def other_cores(self) -> float:
        """Cores kept busy by everything else on the machine (children included), on average."""
        if not self.seconds:
            return 0.0
        return max(0.0, self.machine_cpu_seconds - self.cpu_seconds) / self.seconds

    def cpu_note(self) -> str:
        return (
            f"this process kept {self.busy_cores():.2f} cores busy, "
            f"everything else {self.other_cores():.2f}"
        )


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    """Resident set size of this process now (VmRSS), in MiB."""
    return _status_mb("VmRSS")


def hwm_mb() -> float:
    """The kernel's exact RSS high-water mark (VmHWM) since start or the last reset, in MiB."""
    return _status_mb("VmHWM")


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def ru_maxrss_mb() -> float:
    """Peak RSS of this process's whole life (Linux reports KiB), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class RssSampler:
    """Samples VmRSS in a background thread; `peak_mb` is the highest value seen while running.

    Unlike ru_maxrss, it covers only the measured window, so whatever the process did before
    (generating an export, importing libraries) does not count. Marks split the window into
    phases: `peak_of(name)` is the sampled peak between `mark(name)` and the next mark.

    Sampling can miss a spike shorter than `interval`; where the kernel allows resetting VmHWM,
    `exact_peak_mb` and `exact_peaks` (per phase) give the true high-water marks of the window.
    """

    interval: float = 0.02
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)
    marks: list[tuple[str, float]] = field(default_factory=list)
    exact_peaks: dict[str, float] = field(default_factory=dict)  # phase -> VmHWM, MiB
    _phase: str = "start"
    _hwm_ok: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0

    def __enter__(self) -> RssSampler:
        self._hwm_ok = reset_hwm()
        self._t0 = time.perf_counter()
        self.samples.append((0.0, rss_mb()))
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append((time.perf_counter() - self._t0, rss_mb()))
        self._close_phase()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.perf_counter() - self._t0, rss_mb()))

    def _close_phase(self) -> None:
        if self._hwm_ok:
            self.exact_peaks[self._phase] = max(self.exact_peaks.get(self._phase, 0.0), hwm_mb())
            reset_hwm()

    def mark(self, name: str) -> None:
        self._close_phase()
        self._phase = name
        now = time.perf_counter() - self._t0
        self.samples.append((now, rss_mb()))
        self.marks.append((name, now))

    @property
    def exact_peak_mb(self) -> float | None:
        return max(self.exact_peaks.values()) if self.exact_peaks else None

    @property
    def start_mb(self) -> float:
        return self.samples[0][1]

    @property
    def peak_mb(self) -> float:
        return max(mb for _, mb in self.samples)

    def peak_of(self, name: str) -> float:
        bounds = [t for _, t in self.marks] + [float("inf")]
        for i, (mark, start) in enumerate(self.marks):
            if mark == name:
                inside = [mb for t, mb in self.samples if start <= t <= bounds[i + 1]]
                return max(inside, default=0.0)
        raise KeyError(name)

    def profile(self, points: int = 10) -> list[tuple[float, float]]:
        """(seconds, peak MiB) over `points` equal slices of the window: is memory flat?"""
        end = self.samples[-1][0] or 1.0
        slices: list[tuple[float, float]] = []
        for i in range(points):
            lo, hi = end * i / points, end * (i + 1) / points
            inside = [mb for t, mb in self.samples if lo <= t <= hi]
            if inside:
                slices.append((hi, max(inside)))
        return slices


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def rate_line(label: str, count: int, seconds: float, unit: str = "/s") -> str:
    return f"{label}: {count} in {seconds:.2f} s = {rate(count, seconds):,.1f}{unit}"


def ratio_line(label: str, actual: float, reference: float, target: float | None = None) -> str:
    """`label: 0.93x (actual / reference)`, with the target and whether it was met."""
    value = actual / reference if reference else float("nan")
    verdict = ""
    if target is not None:
        verdict = f"  target >= {target:g}x: {'met' if value >= target else 'MISSED'}"
    return f"{label}: {value:.2f}x ({actual:,.1f} / {reference:,.1f}){verdict}"


def headline(name: str, value: float, unit: str = "x") -> None:
    """The script's last line: `name: value` (what a dashboard or a diff picks up)."""
    text = f"{value:.0f}" if unit == "" else f"{value:.2f}{unit}"
    print(f"{name}: {text}", flush=True)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


@contextmanager
def scratch_dir(prefix: str, keep: Path | None = None) -> Iterator[Path]:
    """A temporary directory (deleted afterwards), or `keep` (created, kept) if given."""
    if keep is not None:
        if keep.exists() and any(keep.iterdir()):
            raise SystemExit(f"--workdir {keep} must be empty or absent")
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix=f"rollout-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def set_env(values: dict[str, str]) -> None:
    """Set environment variables for this process and the children it starts."""
    os.environ.update(values)
