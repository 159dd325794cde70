"""Group commit: notify's sending rate against the raw pooled rate, per state DB backend.

    .venv/bin/python bench/journal.py [--n 2000] [--connections 16] [--repeat 3]
                                      [--state-url sqlite] [--state-url ...]

The relay is `tools/smtp_server.py` as a sink in its own process, answering at once (0 ms), so
whatever the journal costs shows. The state DB is prepared once by the PIN stage on a synthetic
congstar export (cheap argon2), then each run gets a fresh copy. N messages go out as:

- raw: aiosmtplib over the same number of pooled connections, bytes serialised beforehand,
  nothing recorded: what the transport alone allows;
- deliver, no journal: `deliver` with the same pre-built messages and a journal that does
  nothing;
- notify, no journal: composing lazily as notify does, with a journal that does nothing: the
  journal's cost is the difference between this row and the next three;
- notify, one commit per mark on the loop: the journal as it was before group commit, each mark
  one statement and one commit, on the event loop thread;
- notify, one commit per mark on the writer thread: `StoreJournal(max_batch=1)`;
- notify, group commit: `StoreJournal` as `notify_brand` uses it (marks that meet share a
  commit; 'sending' is awaited until committed);
- notify_brand: the real entry point, as shipped (group commit), for comparison with the above.

The notify rows compose lazily from the state DB's pending customers, as `notify_brand` does.
Each row runs `--repeat` times, alternating, and the best rate counts. Ratios are against raw.
The table also gives the least CPU time of this process (all its threads) per message: on a
shared machine the rates swing with the load, the CPU cost much less.

Backends (`--state-url`, one column each): `sqlite` (a fresh copy of the prepared file per
run). A PostgreSQL column needs only a `Backend` whose `fresh()` loads the prepared DB into a
fresh database and returns an opener for it (see BACKENDS).

Target (#12): notify >= 0.85x raw on PostgreSQL. Headline: ``journal_group_commit_vs_raw``
(notify_brand / raw on the first backend).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from _common import Timer, headline, load_line, machine_line, rate, scratch_dir, section
from sending import (
    NullJournal,
    fresh_state,
    pending,
    prepare_state,
    send_raw,
    serialise,
    smtp_sink,
)

from rollout.addresses import redact_addresses
from rollout.brands import Brand, load_brand
from rollout.delivery import DeliverySettings, Journal, Outcome, OutgoingMessage, deliver
from rollout.journal import StoreJournal
from rollout.messages import Composer
from rollout.notify import campaign_id, notify_brand, outgoing
from rollout.state import StateStore
from rollout.transports import open_transport

RAW_TARGET = 0.85
OpenStore = Callable[[], StateStore]


# --- backends ---------------------------------------------------------------------------------


class Backend(Protocol):
    name: str

    def fresh(self, prepared: Path, target: Path) -> OpenStore:
        """A fresh copy of the prepared state DB; returns how to open a connection to it."""


@dataclass
class Sqlite:
    name: str = "sqlite"

    def fresh(self, prepared: Path, target: Path) -> OpenStore:
        state_dir = fresh_state(prepared, target)
        return lambda: StateStore.in_dir(state_dir)


BACKENDS: dict[str, Callable[[str], Backend]] = {"sqlite": lambda url: Sqlite()}


def backend(url: str) -> Backend:
    scheme = url.split(":", 1)[0]
    if scheme not in BACKENDS:
        raise SystemExit(f"--state-url {url}: known schemes are {', '.join(BACKENDS)}")
    return BACKENDS[scheme](url)


# --- journals ---------------------------------------------------------------------------------


class LoopJournal:
    """The journal before group commit: one statement, one commit, per mark, on the loop."""

    def __init__(self, store: StateStore, brand: str, campaign: str) -> None:
        self.store, self.key = store, (brand, campaign)

    async def __aenter__(self) -> LoopJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def sending(self, m: OutgoingMessage) -> None:
        self.store.mark_sending(*self.key, m.customer_id, m.message_id, m.recipient)

    def finished(self, o: Outcome) -> None:
        reason = redact_addresses(o.reason)
        self.store.mark_finished(*self.key, o.customer_id, o.status, o.code, reason, o.permanent)

    def released(self, m: OutgoingMessage) -> None:
        self.store.release(*self.key, m.customer_id)

    async def flush(self) -> None:
        pass


class AsyncJournal(Journal, Protocol):
    async def __aenter__(self) -> Journal: ...

    async def __aexit__(self, *exc: object) -> None: ...


# (the state DB the run reads from, how to open another connection, brand, campaign)
MakeJournal = Callable[[StateStore, OpenStore, str, str], AsyncJournal]


class NoJournal(NullJournal):
    async def __aenter__(self) -> NoJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


JOURNALS: dict[str, MakeJournal] = {
    "notify, no journal": lambda s, o, b, c: NoJournal(),
    "notify, a commit per mark, on the loop": lambda s, o, b, c: LoopJournal(s, b, c),
    "notify, a commit per mark, writer thread": lambda s, o, b, c: StoreJournal(
        o, b, c, max_batch=1
    ),
    "notify, group commit": lambda s, o, b, c: StoreJournal(o, b, c),
}


# --- runs -------------------------------------------------------------------------------------


def send_notify_path(
    open_store: OpenStore, make: MakeJournal, brand: Brand, url: str, n: int, conns: int
) -> Timer:
    """What notify_brand does (compose lazily from the pending customers, deliver, journal),
    with the journal given."""
    campaign = campaign_id(brand)

    async def run(store: StateStore) -> int:
        composer = Composer(brand, campaign)
        composer.validate()
        recipients = store.iter_pending(brand.slug, campaign, n)
        messages = outgoing(recipients, composer, brand, lambda r: None)
        async with make(store, open_store, brand.slug, campaign) as journal:
            settings = DeliverySettings(connections=conns)
            stats = await deliver(messages, open_transport(url), journal, settings)
        return stats.sent

    with open_store() as store, Timer() as t:
        sent = asyncio.run(run(store))
    if sent != n:
        raise RuntimeError(f"sent {sent} of {n}")
    return t


def send_notify_brand(open_store: OpenStore, brand: Brand, url: str, n: int, conns: int) -> Timer:
    settings = DeliverySettings(connections=conns)
    with open_store() as store, Timer() as t:
        summary = asyncio.run(notify_brand(brand, store, open_transport(url), settings, limit=n))
    if summary.sent != n:
        raise RuntimeError(f"notify sent {summary.sent} of {n}: {summary.as_dict()}")
    return t


def send_no_journal(messages: list[OutgoingMessage], url: str, conns: int) -> Timer:
    settings = DeliverySettings(connections=conns)
    with Timer() as t:
        stats = asyncio.run(deliver(messages, open_transport(url), NullJournal(), settings))
    if stats.sent != len(messages):
        raise RuntimeError(f"sent {stats.sent} of {len(messages)}")
    return t


# --- main -------------------------------------------------------------------------------------

RAW, NO_JOURNAL, NOTIFY_BRAND = "raw pool (transport only)", "deliver, no journal", "notify_brand"


Table = dict[str, dict[str, float]]  # row -> backend -> figure


def measure(
    backends: list[Backend], work: Path, prepared: Path, brand: Brand, n: int, conns: int, rep: int
) -> tuple[Table, Table]:
    """The best rate and the least CPU per message (this process, all its threads)."""
    messages = serialise(brand, pending(prepared, brand, n))
    rows = [RAW, NO_JOURNAL, *JOURNALS, NOTIFY_BRAND]
    best: Table = {row: {} for row in rows}
    cpu: Table = {row: {} for row in rows}
    with smtp_sink(0.0) as sink:
        for round_ in range(1, rep + 1):
            section(f"round {round_} of {rep}: {n} messages, {conns} connections, 0 ms")
            for b in backends:
                results: list[tuple[str, Timer]] = [
                    (RAW, send_raw(sink.port, messages, conns)),
                    (NO_JOURNAL, send_no_journal(messages, sink.url, conns)),
                ]
                for i, (row, make) in enumerate(JOURNALS.items()):
                    opener = b.fresh(prepared, work / f"{b.name}-{round_}-{i}")
                    results.append((row, send_notify_path(opener, make, brand, sink.url, n, conns)))
                opener = b.fresh(prepared, work / f"{b.name}-{round_}-brand")
                results.append((NOTIFY_BRAND, send_notify_brand(opener, brand, sink.url, n, conns)))
                for row, t in results:
                    r = rate(n, t.seconds)
                    best[row][b.name] = max(best[row].get(b.name, 0.0), r)
                    us = t.cpu_seconds / n * 1e6
                    cpu[row][b.name] = min(cpu[row].get(b.name, us), us)
                    where = f"[{b.name}]" if row not in (RAW, NO_JOURNAL) else ""
                    print(f"{row:44s}{where:9s}{r:9,.0f} msgs/s  ({t.cpu_note()})")
    return best, cpu


def report(best: Table, cpu: Table, backends: list[Backend]) -> None:
    section(
        f"best rate in msgs/s, its ratio to raw (target for notify >= {RAW_TARGET:g}x), and the "
        "least CPU of this process per message"
    )
    names = [b.name for b in backends]
    print(f"{'':44s}" + "".join(f"{name:>30s}" for name in names))
    for row, by_backend in best.items():
        cells = [
            f"{by_backend[n]:6,.0f} ({by_backend[n] / best[RAW][n]:4.2f}x) {cpu[row][n]:5,.0f} µs"
            for n in names
        ]
        print(f"{row:44s}" + "".join(f"{c:>30s}" for c in cells))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="messages per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (best of)")
    parser.add_argument(
        "--state-url", action="append", help="state DB backend, one column each (default sqlite)"
    )
    parser.add_argument("--workdir", type=Path, help="keep files here instead of a temp dir")
    args = parser.parse_args(argv)
    backends = [backend(url) for url in args.state_url or ["sqlite"]]

    brand = load_brand("congstar")
    print(machine_line())
    with scratch_dir("journal", args.workdir) as work:
        with Timer() as t:
            prepared = prepare_state(work, brand, int(args.n * 1.05) + 100)
        print(f"prepared the state DB in {t.seconds:.1f} s")
        best, cpu = measure(backends, work, prepared, brand, args.n, args.connections, args.repeat)
    report(best, cpu, backends)
    print(load_line())
    first = backends[0].name
    headline("journal_group_commit_vs_raw", best[NOTIFY_BRAND][first] / best[RAW][first])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
