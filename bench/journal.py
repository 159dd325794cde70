"""Group commit: notify's sending rate against the raw pooled rate, per state DB backend.

    .venv/bin/python bench/journal.py [--n 2000] [--connections 16] [--repeat 3]
                                      [--state-url sqlite] [--state-url postgresql] [--unpinned]

The relay is `tools/smtp_server.py` as a sink in its own process, answering at once (0 ms), so
whatever the journal costs shows. The state DB is prepared once by the PIN stage on a synthetic
congstar export (cheap argon2), then each run gets a fresh copy. N messages go out as:

- raw: aiosmtplib over the same number of pooled connections, bytes serialised beforehand,
  nothing recorded: what the transport alone allows;
- deliver, no journal: `deliver` with the same pre-built messages and a journal that does
  nothing;
- notify, no journal: `notify_brand` (claims, lazy composing, delivery) with a journal that
  does nothing: the journal's cost is the difference between this row and the ones below;
- notify, a commit per mark on the loop: `DirectJournal`, each mark one statement and one
  commit, on the event loop thread (what SQLite ships);
- notify, group commit in batches of one (PostgreSQL only): `GroupJournal(max_batch=1)`, each
  mark its own statement and commit on the async connection;
- notify, group commit (PostgreSQL only): `GroupJournal`, what PostgreSQL ships;
- notify's journal, no claims: notify's path with `iter_pending` (reads only) instead of
  claiming a page at a time: what claiming costs is notify_brand minus this row;
- notify_brand: the real entry point, as shipped (claims; the journal `journal_for` picks).

The "notify" rows are `notify_brand` itself, its `journal_for` swapped (mock.patch) for the
journal named, so they claim customers as it does (on PostgreSQL `FOR UPDATE SKIP LOCKED`, a
page of 100 at a time, on the event loop thread). Each row runs `--repeat` times, alternating,
and the best rate counts. Ratios are against raw. The table also gives the least CPU time of
this process (all its threads) per message, and on PostgreSQL the server's (postmaster and
backends, from /proc): on a shared machine the rates swing with the load, the CPU cost much
less. "Everything else" (other sessions, the sink) excludes the PostgreSQL server.

Backends (`--state-url`, one column each; by default both when PostgreSQL's binaries are found
(tools/pg_server.py's `find_bindir`), else sqlite alone, with a line saying why):

- `sqlite`: a fresh copy of the prepared file per run;
- `postgresql`: a throw-away server of tools/pg_server.py, durable (fsync on, as a real
  server), started once; per run a fresh database, its tables made by `StateStore`, the
  prepared SQLite DB's rows copied in, then ANALYZE and CHECKPOINT (none of it timed).

Placement (`--unpinned` to leave it to the scheduler): with two or more CPUs the sink runs on
a CPU of its own and everything else (this process, the PostgreSQL server) on the others. The
relay is another machine in any deployment, and the sink is what limits the raw rate here, so
nothing the journal brings along may take CPU from it. Left to the scheduler on two cores, the
server's backend lands on the sink's CPU in some runs and on ours in others, and the same code
swings between about 0.7x and 0.9x with it (pinned to the sink's CPU: 0.67x; to ours: 0.85-0.9x;
raw is the same either way). Pinned, the server shares a CPU with this process: pessimistic
for the journal, as in production the server has a host of its own.

Target (#12): notify >= 0.85x raw on PostgreSQL. Headline: ``journal_group_commit_vs_raw``
(notify_brand / raw on PostgreSQL if measured, else on the first backend).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

from _common import (
    Placement,
    Timer,
    child_pids,
    headline,
    load_line,
    machine_line,
    pin,
    process_tree_cpu_seconds,
    rate,
    ratio_line,
    scratch_dir,
    section,
    set_env,
)
from sending import (
    NullJournal,
    fresh_state,
    pending,
    prepare_state,
    send_raw,
    serialise,
    smtp_sink,
)
from sqlalchemy import insert, select

import rollout.notify
from pg_server import PgServer, find_bindir
from rollout.brands import Brand, campaign_id, load_brand
from rollout.delivery import DeliverySettings, Journal, OutgoingMessage, deliver
from rollout.journal import DirectJournal, GroupJournal, journal_for
from rollout.messages import Composer
from rollout.notify import notify_brand, outgoing
from rollout.state import StateStore
from rollout.state.pg_journal import PostgresJournalWriter
from rollout.state.tables import bounce_marks, customers, deliveries, rejects
from rollout.transports import open_transport

RAW_TARGET = 0.85
OpenStore = Callable[[], StateStore]


# --- backends ---------------------------------------------------------------------------------


class Backend(Protocol):
    name: str

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...

    def fresh(self, prepared: Path, target: Path) -> OpenStore:
        """A fresh copy of the prepared state DB; returns how to open a connection to it."""

    def server_cpu_seconds(self) -> float:
        """CPU time the DB server has used so far (0 for an embedded DB: it is ours)."""


@dataclass
class Sqlite:
    name: str = "sqlite"

    def __enter__(self) -> Sqlite:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def fresh(self, prepared: Path, target: Path) -> OpenStore:
        state_dir = fresh_state(prepared, target)
        return lambda: StateStore.in_dir(state_dir)

    def server_cpu_seconds(self) -> float:
        return 0.0


def copy_state(prepared: Path, url: str) -> None:
    """The prepared SQLite state DB's rows into the (empty) database at `url`, whose tables
    StateStore makes; then ANALYZE (planner statistics, as autovacuum would gather them on a
    live DB) and CHECKPOINT (no write-back of the copy left to overlap the measured run)."""
    with StateStore.in_dir(prepared, read_only=True) as source, StateStore(url) as target:
        with target.transaction() as db:
            for table in (customers, rejects, deliveries, bounce_marks):
                rows = [dict(r) for r in source.db.execute(select(table)).mappings()]
                if rows:
                    db.execute(insert(table), rows)
        target.db.exec_driver_sql("ANALYZE")
        target.db.exec_driver_sql("CHECKPOINT")


@dataclass
class Postgres:
    """A throw-away server (tools/pg_server.py, durable: fsync on, as a real server), one fresh
    database per run, loaded with the prepared state DB's rows."""

    name: str = "postgresql"
    cpus: frozenset[int] | None = None  # where the server runs (its backends inherit it)
    server: PgServer = field(default_factory=lambda: PgServer(durable=True))
    databases: int = 0
    background: int | None = None  # the server's own processes

    def __enter__(self) -> Postgres:
        self.server.start()
        if self.cpus is not None:
            postmaster = self.postmaster()
            pin([postmaster, *child_pids(postmaster)], self.cpus)
        set_env(self.server.env)  # PGPASSWORD: StateStore(url) reads it, as a real run does
        print(f"PostgreSQL from {self.server.bindir}, durable (fsync on), at {self.server.url}")
        return self

    def postmaster(self) -> int:
        assert self.server.directory is not None
        pid_file = self.server.directory / "data" / "postmaster.pid"
        return int(pid_file.read_text().split()[0])

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def fresh(self, prepared: Path, target: Path) -> OpenStore:
        if self.databases:  # the last run's, no longer used: keep the server small
            self.server.drop_database(f"bench_{self.databases}")
        self.databases += 1
        url = self.server.create_database(f"bench_{self.databases}")
        copy_state(prepared, url)
        return lambda: StateStore(url)

    def server_cpu_seconds(self) -> float:
        """The postmaster's CPU with its children's, once the last run's backends are gone
        (their CPU counts once the postmaster has reaped them)."""
        postmaster = self.postmaster()
        if self.background is None:  # checkpointer, WAL writer ...: no client yet
            time.sleep(0.5)  # the connection that made the first database is gone by now
            self.background = len(child_pids(postmaster))
        deadline = time.monotonic() + 5
        while len(child_pids(postmaster)) > self.background and time.monotonic() < deadline:
            time.sleep(0.02)
        return process_tree_cpu_seconds(postmaster)


# A backend from its --state-url, and the CPUs a server of its own runs on (None: anywhere).
BACKENDS: dict[str, Callable[[str, frozenset[int] | None], Backend]] = {
    "sqlite": lambda url, cpus: Sqlite(),
    "postgresql": lambda url, cpus: (
        Postgres(cpus=cpus) if url == "postgresql" else throw_away_only(url)
    ),
}


def throw_away_only(url: str) -> Backend:
    raise SystemExit(
        f"--state-url {url}: the postgresql column runs on a throw-away server of its own "
        "(tools/pg_server.py): say `postgresql`, no host or database"
    )


NO_POSTGRES = (
    "PostgreSQL column skipped: no PostgreSQL binaries (initdb, pg_ctl, postgres) on PATH or "
    "in /usr/lib/postgresql/*/bin (Debian's `postgresql` package); sqlite only"
)


def backend(url: str, cpus: frozenset[int] | None) -> Backend:
    scheme = url.split(":", 1)[0]
    if scheme not in BACKENDS:
        raise SystemExit(f"--state-url {url}: known schemes are {', '.join(BACKENDS)}")
    return BACKENDS[scheme](url, cpus)


def default_backends() -> list[str]:
    if find_bindir() is None:
        print(NO_POSTGRES)
        return ["sqlite"]
    return ["sqlite", "postgresql"]


# --- journals ---------------------------------------------------------------------------------


class AsyncJournal(Journal, Protocol):
    async def __aenter__(self) -> Journal: ...

    async def __aexit__(self, *exc: object) -> None: ...


# What notify_brand calls `journal_for` with: its store, brand, campaign.
MakeJournal = Callable[[StateStore, str, str], AsyncJournal]


class NoJournal(NullJournal):
    async def __aenter__(self) -> NoJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


# notify_brand itself (claims included) with its journal swapped for the one given.
JOURNALS: dict[str, MakeJournal] = {
    "notify, no journal": lambda o, b, c: NoJournal(),
    "notify, a commit per mark, on the loop": DirectJournal,
    "notify, group commit, batches of one": lambda s, b, c: GroupJournal(
        PostgresJournalWriter(s.url, b, c), max_batch=1
    ),
    "notify, group commit": lambda s, b, c: GroupJournal(PostgresJournalWriter(s.url, b, c)),
}
# Rows with a journal SQLite has no driver for (no async connection to batch on).
POSTGRESQL_ONLY = {"notify, group commit, batches of one", "notify, group commit"}


# --- runs -------------------------------------------------------------------------------------


def send_notify_brand(
    make: MakeJournal | None, brand: Brand, url: str, n: int, conns: int, open_store: OpenStore
) -> Timer:
    """`notify_brand` as shipped (mark_interrupted, claims a page at a time, compose lazily,
    deliver, journal, release_claims), with its journal swapped for `make`'s if given."""
    settings = DeliverySettings(connections=conns)
    swapped: AbstractContextManager[Any] = (
        mock.patch.object(rollout.notify, "journal_for", make) if make else nullcontext()
    )
    with open_store() as store, swapped, Timer() as t:
        summary = asyncio.run(notify_brand(brand, store, open_transport(url), settings, limit=n))
    if summary.sent != n:
        raise RuntimeError(f"notify sent {summary.sent} of {n}: {summary.as_dict()}")
    return t


def send_unclaimed(brand: Brand, url: str, n: int, conns: int, open_store: OpenStore) -> Timer:
    """notify_brand's path without claims: compose lazily from `iter_pending` (reads only),
    deliver, the journal notify uses. What claiming costs is notify_brand minus this."""
    campaign = campaign_id(brand)

    async def run(store: StateStore) -> int:
        composer = Composer(brand, campaign)
        composer.validate()
        recipients = store.iter_pending(brand.slug, campaign, n)
        messages = outgoing(recipients, composer, brand, lambda r: None)
        async with journal_for(store, brand.slug, campaign) as journal:
            settings = DeliverySettings(connections=conns)
            stats = await deliver(messages, open_transport(url), journal, settings)
        return stats.sent

    with open_store() as store, Timer() as t:
        sent = asyncio.run(run(store))
    if sent != n:
        raise RuntimeError(f"sent {sent} of {n}")
    return t


def send_no_journal(messages: list[OutgoingMessage], url: str, conns: int) -> Timer:
    settings = DeliverySettings(connections=conns)
    with Timer() as t:
        stats = asyncio.run(deliver(messages, open_transport(url), NullJournal(), settings))
    if stats.sent != len(messages):
        raise RuntimeError(f"sent {stats.sent} of {len(messages)}")
    return t


# --- main -------------------------------------------------------------------------------------

RAW, NO_JOURNAL = "raw pool (transport only)", "deliver, no journal"
UNCLAIMED = "notify's journal, no claims (iter_pending)"
NOTIFY_BRAND = "notify_brand (as shipped)"


Table = dict[str, dict[str, float]]  # row -> backend -> figure


@dataclass
class Results:
    best: Table  # the best rate
    cpu: Table  # the least CPU of this process (all its threads) per message, µs
    server: Table  # the least CPU of the DB server per message, µs (PostgreSQL)
    others: dict[str, list[float]]  # backend -> cores everything else kept busy, per run


def measure(
    backends: list[Backend],
    work: Path,
    prepared: Path,
    brand: Brand,
    n: int,
    conns: int,
    rep: int,
    relay_cpus: frozenset[int] | None,
) -> Results:
    messages = serialise(brand, pending(prepared, brand, n))
    rows = [RAW, NO_JOURNAL, *JOURNALS, UNCLAIMED, NOTIFY_BRAND]
    res = Results({r: {} for r in rows}, {r: {} for r in rows}, {r: {} for r in rows}, {})
    with smtp_sink(0.0, relay_cpus) as sink:
        for round_ in range(1, rep + 1):
            section(f"round {round_} of {rep}: {n} messages, {conns} connections, 0 ms")
            send = (brand, sink.url, n, conns)
            notify: list[tuple[str, Callable[[OpenStore], Timer]]] = [
                *((row, partial(send_notify_brand, make, *send)) for row, make in JOURNALS.items()),
                (UNCLAIMED, partial(send_unclaimed, *send)),
                (NOTIFY_BRAND, partial(send_notify_brand, None, *send)),
            ]
            for b in backends:

                def timed(row: str, run: Callable[[], Timer], b: Backend = b) -> None:
                    server_before = b.server_cpu_seconds()
                    t = run()
                    record(res, row, b.name, n, t, b.server_cpu_seconds() - server_before)

                timed(RAW, lambda: send_raw(sink.port, messages, conns))
                timed(NO_JOURNAL, lambda: send_no_journal(messages, sink.url, conns))
                for i, (row, send_with) in enumerate(notify):
                    if row in POSTGRESQL_ONLY and b.name != "postgresql":
                        continue
                    # A fresh DB for each run, made just before it (not timed).
                    opener = b.fresh(prepared, work / f"{b.name}-{round_}-{i}")
                    timed(row, partial(send_with, opener))
    return res


def record(res: Results, row: str, name: str, n: int, t: Timer, server_s: float) -> None:
    r = rate(n, t.seconds)
    res.best[row][name] = max(res.best[row].get(name, 0.0), r)
    us, server_us = t.cpu_seconds / n * 1e6, server_s / n * 1e6
    res.cpu[row][name] = min(res.cpu[row].get(name, us), us)
    res.server[row][name] = min(res.server[row].get(name, server_us), server_us)
    server_cores = server_s / t.seconds if t.seconds else 0.0
    other = max(0.0, t.other_cores() - server_cores)
    res.others.setdefault(name, []).append(other)
    where = f"[{name}]" if row not in (RAW, NO_JOURNAL) else ""
    note = f"this process kept {t.busy_cores():.2f} cores busy, "
    if server_s:
        note += f"the PostgreSQL server {server_cores:.2f}, "
    print(f"{row:44s}{where:12s}{r:7,.0f} msgs/s  ({note}everything else {other:.2f})")


def report(res: Results, backends: list[Backend]) -> None:
    section(
        f"best rate in msgs/s, its ratio to raw (target for notify >= {RAW_TARGET:g}x), and the "
        "least CPU per message of this process (+ the DB server's, PostgreSQL)"
    )
    names = [b.name for b in backends]
    print(f"{'':44s}" + "".join(f"{name:>36s}" for name in names))
    for row, by_backend in res.best.items():
        cells = []
        for n in names:
            if n not in by_backend:
                cells.append("-")
                continue
            cell = f"{by_backend[n]:6,.0f} ({by_backend[n] / res.best[RAW][n]:4.2f}x) "
            cell += f"{res.cpu[row][n]:5,.0f} µs"
            server = res.server[row][n]
            cell += f" +{server:4,.0f}" if server else " " * 6
            cells.append(cell)
        print(f"{row:44s}" + "".join(f"{c:>36s}" for c in cells))
    for n in names:
        others = res.others[n]
        print(
            f"[{n}] everything else (the sink and other sessions; not the PostgreSQL server) "
            f"kept {min(others):.2f}-{max(others):.2f} cores busy"
        )
    for n in names:
        brand_rate, raw_rate = res.best[NOTIFY_BRAND][n], res.best[RAW][n]
        print(ratio_line(f"[{n}] notify_brand / raw", brand_rate, raw_rate, RAW_TARGET))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="messages per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (best of)")
    parser.add_argument(
        "--state-url",
        action="append",
        help="state DB backend, one column each: sqlite, postgresql (a throw-away durable "
        "server); default both if PostgreSQL is installed, else sqlite",
    )
    parser.add_argument("--workdir", type=Path, help="keep files here instead of a temp dir")
    parser.add_argument(
        "--unpinned",
        action="store_true",
        help="let the scheduler place the sink, this process and the DB server (see above)",
    )
    args = parser.parse_args(argv)
    placement = None if args.unpinned else Placement.split()
    rest = placement.rest if placement else None
    backends = [backend(url, rest) for url in args.state_url or default_backends()]

    brand = load_brand("congstar")
    print(machine_line())
    if placement is not None:
        pin([os.getpid()], placement.rest)  # its threads, started later, inherit it
        print(f"placement: {placement}")
    else:
        print("placement: unpinned, wherever the scheduler puts each process")
    with scratch_dir("journal", args.workdir) as work, ExitStack() as stack:
        for b in backends:
            stack.enter_context(b)
        with Timer() as t:
            prepared = prepare_state(work, brand, int(args.n * 1.05) + 100)
        print(f"prepared the state DB in {t.seconds:.1f} s")
        relay_cpus = placement.relay if placement else None
        res = measure(
            backends, work, prepared, brand, args.n, args.connections, args.repeat, relay_cpus
        )
    report(res, backends)
    print(load_line())
    # The target (#12) is on PostgreSQL: its ratio is the headline when it was measured.
    names = [b.name for b in backends]
    chosen = "postgresql" if "postgresql" in names else names[0]
    headline("journal_group_commit_vs_raw", res.best[NOTIFY_BRAND][chosen] / res.best[RAW][chosen])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
