"""Sending throughput of the real notify path against a mail merge and raw pooled aiosmtplib.

    .venv/bin/python bench/sending.py [--n0 2000] [--n20 1000] [--connections-0ms 16]
                                      [--connections-20ms 64] [--repeat 3] [--sweep]

The SMTP server is `tools/smtp_server.py` in sink mode, in its own process, answering DATA at
once (0 ms) or after 20 ms (a slow relay). The state DB comes from the PIN stage on a synthetic
congstar export (argon2 made cheap through ROLLOUT_ARGON2_TIME_COST=1, _MEMORY_KIB=64: hashing is
not measured here). For each delay, N messages go out three ways:

- notify: `rollout.notify.notify_brand` (render, compose, journal each message in the state DB
  before and after the SMTP transaction, deliver over a pool of persistent connections), on a
  fresh copy of the prepared state DB;
- baseline, a classic mail merge: one thread, stdlib `smtplib`, a new connection per message,
  each message rendered with the same templates and built as an `email.message.EmailMessage`;
- raw: aiosmtplib, the same number of pooled connections, the bytes serialised beforehand:
  what the network path alone allows, with nothing recorded.

At 0 ms a breakdown also times the parts of notify separately: composing, journalling (one
message at a time, so each 'sending' is a commit of its own, with the previous 'sent' in it) and
`deliver` with pre-built messages and no journal. bench/journal.py compares the journal with and
without group commit.

notify and raw run `--repeat` times each, alternately, and the best rate counts; the baseline
runs once (at 20 ms it is bound by the server's delay, not by CPU). The default connection counts
(16 at 0 ms, 64 at 20 ms) are what `--sweep` measured best here on 2 cores.

Targets: notify >= 15x baseline at 20 ms; notify >= 0.7x raw at 0 ms.
Headline: ``sending_speedup_20ms: 17.3x``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import signal
import smtplib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path

from _common import (
    CHEAP_ARGON2,
    REPO,
    Timer,
    cores,
    headline,
    load_line,
    machine_line,
    pin,
    rate,
    ratio_line,
    scratch_dir,
    section,
    set_env,
)

set_env(CHEAP_ARGON2)  # before anything reads HashParams.from_env()

import aiosmtplib  # noqa: E402

from rollout.assign import assign_pins, local_hash_map  # noqa: E402
from rollout.brands import Brand, campaign_id, load_brand  # noqa: E402
from rollout.delivery import DeliverySettings, Outcome, OutgoingMessage, deliver  # noqa: E402
from rollout.exports import export_path, open_export  # noqa: E402
from rollout.journal import journal_for  # noqa: E402
from rollout.messages import Composer  # noqa: E402
from rollout.model import Recipient  # noqa: E402
from rollout.notify import notify_brand, outgoing  # noqa: E402
from rollout.pins import PinHasher  # noqa: E402
from rollout.state import StateStore  # noqa: E402
from rollout.transports import open_transport  # noqa: E402
from synthetic import write_synthetic_export  # noqa: E402

HOST = "127.0.0.1"
SPEEDUP_TARGET_20MS = 15.0
RAW_TARGET_0MS = 0.7


# --- the server -------------------------------------------------------------------------------


@dataclass
class Sink:
    port: int
    summary: dict[str, float] = field(default_factory=dict)  # filled when the sink stops

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"


@contextmanager
def smtp_sink(delay_ms: float, cpus: frozenset[int] | None = None) -> Iterator[Sink]:
    """`tools/smtp_server.py` as a counting sink in its own process (on `cpus` if given)."""
    command = [sys.executable, str(REPO / "tools" / "smtp_server.py")]
    command += ["--host", HOST, "--port", "0", "--delay-ms", str(delay_ms)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if cpus is not None:
        pin([proc.pid], cpus)
    try:
        sink = Sink(int(proc.stdout.readline()))
        yield sink
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    lines = out.strip().splitlines()
    if lines:
        sink.summary = json.loads(lines[-1])


# --- preparation ------------------------------------------------------------------------------


def prepare_state(work: Path, brand: Brand, customers: int) -> Path:
    """A state DB as the PIN stage leaves it; returns its directory (copy it before use)."""
    exports, state_dir = work / "exports", work / "prepared"
    exports.mkdir(parents=True)
    write_synthetic_export(export_path(exports, brand), customers, seed=2, bad_row_share=0.0)
    with StateStore.in_dir(state_dir) as store:
        export = open_export(export_path(exports, brand), brand)
        assign_pins(export, brand, store, state_dir, local_hash_map(PinHasher.from_env(), cores()))
    return state_dir


def fresh_state(prepared: Path, target: Path) -> Path:
    """A copy of the prepared state DB (closed, so the WAL is checkpointed into the file)."""
    target.mkdir(parents=True)
    shutil.copy2(prepared / "state.sqlite3", target / "state.sqlite3")
    return target


def pending(prepared: Path, brand: Brand, n: int) -> list[Recipient]:
    with StateStore.in_dir(prepared, read_only=True) as store:
        recipients = list(store.iter_pending(brand.slug, campaign_id(brand), limit=n))
    if len(recipients) < n:
        raise RuntimeError(f"only {len(recipients)} reachable customers, {n} wanted")
    return recipients


# --- the three ways to send -------------------------------------------------------------------


def send_notify(
    prepared: Path, target: Path, brand: Brand, url: str, n: int, connections: int
) -> Timer:
    state_dir = fresh_state(prepared, target)
    settings = DeliverySettings(connections=connections)
    with StateStore.in_dir(state_dir) as store, Timer() as t:
        summary = asyncio.run(notify_brand(brand, store, open_transport(url), settings, limit=n))
    if summary.sent != n:
        raise RuntimeError(f"notify sent {summary.sent} of {n}: {summary.as_dict()}")
    return t


def send_classic(brand: Brand, recipients: list[Recipient], port: int) -> Timer:
    """A mail merge as it is usually written: render, build an EmailMessage, connect, send."""
    composer = Composer(brand, campaign_id(brand))
    sender = formataddr((brand.sender_name, brand.sender_address))
    with Timer() as t:
        for r in recipients:
            rendered = composer.render(r)
            msg = EmailMessage()
            msg["From"] = sender
            msg["To"] = formataddr((f"{r.first_name} {r.last_name}", r.email))
            msg["Subject"] = rendered.subject
            msg["Date"] = formatdate(localtime=True)
            msg["Message-ID"] = composer.message_id(r.customer_id)
            msg.set_content(rendered.text)
            msg.add_alternative(rendered.html, subtype="html")
            with smtplib.SMTP(HOST, port) as smtp:
                smtp.send_message(msg)
    return t


def serialise(brand: Brand, recipients: list[Recipient]) -> list[OutgoingMessage]:
    composer = Composer(brand, campaign_id(brand))
    composer.validate()  # as notify does: it lets the composer fill pre-rendered skeletons
    return list(outgoing(recipients, composer, brand, lambda r: None))


async def raw_pool(port: int, messages: list[OutgoingMessage], connections: int) -> None:
    """aiosmtplib, `connections` persistent sessions pulling pre-built messages."""
    todo = iter(messages)

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False)
        await smtp.connect()
        for m in todo:
            await smtp.sendmail(m.sender, [m.recipient], m.data)
        await smtp.quit()

    await asyncio.gather(*(worker() for _ in range(connections)))


def send_raw(port: int, messages: list[OutgoingMessage], connections: int) -> Timer:
    with Timer() as t:
        asyncio.run(raw_pool(port, messages, connections))
    return t


# --- breakdown of notify's costs --------------------------------------------------------------


class NullJournal:
    async def sending(self, message: OutgoingMessage) -> None:
        pass

    async def flush(self) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        pass

    def released(self, message: OutgoingMessage) -> None:
        pass


def breakdown(
    prepared: Path, work: Path, brand: Brand, recipients: list[Recipient], url: str, conns: int
) -> None:
    n = len(recipients)
    composer = Composer(brand, campaign_id(brand))
    composer.validate()  # as notify does: it lets the composer fill pre-rendered skeletons
    with Timer() as t:
        messages = list(outgoing(recipients, composer, brand, lambda r: None))
    print(f"compose (render + serialise): {t.seconds / n * 1e6:,.0f} µs/message")

    state_dir = fresh_state(prepared, work / "journal")

    async def journal_alone() -> None:  # one message at a time: no two 'sending' marks together
        with StateStore.in_dir(state_dir) as store:
            async with journal_for(store, brand.slug, campaign_id(brand)) as journal:
                for m in messages:
                    await journal.sending(m)
                    outcome = Outcome(m.customer_id, m.message_id, "sent", 1, 250, "250 OK")
                    journal.finished(outcome)

    with Timer() as t:
        asyncio.run(journal_alone())
    print(f"journal (sending awaited, one at a time): {t.seconds / n * 1e6:,.0f} µs/message")

    settings = DeliverySettings(connections=conns)
    with Timer() as t:
        stats = asyncio.run(deliver(messages, open_transport(url), NullJournal(), settings))
    assert stats.sent == n, stats
    print(
        f"deliver, pre-built messages, no journal: {rate(n, t.seconds):,.0f} msgs/s "
        f"({t.seconds / n * 1e6:,.0f} µs/message; {t.cpu_note()})"
    )


# --- main -------------------------------------------------------------------------------------


@dataclass
class Result:
    notify: float
    baseline: float
    raw: float


def measure(
    delay_ms: float,
    n: int,
    connections: int,
    prepared: Path,
    work: Path,
    brand: Brand,
    baseline_n: int,
    repeat: int,
    with_breakdown: bool,
) -> Result:
    section(f"{delay_ms:g} ms per message at the server: {n} messages, {connections} connections")
    recipients = pending(prepared, brand, n)
    messages = serialise(brand, recipients)
    notify = raw = 0.0
    with smtp_sink(delay_ms) as sink:
        for round_ in range(1, repeat + 1):
            where = work / f"notify-{delay_ms:g}-{round_}"
            t = send_notify(prepared, where, brand, sink.url, n, connections)
            notify = max(notify, rate(n, t.seconds))
            print(
                f"notify:   {rate(n, t.seconds):9,.1f} msgs/s  ({t.seconds:.2f} s; {t.cpu_note()})"
            )

            t = send_raw(sink.port, messages, connections)
            raw = max(raw, rate(n, t.seconds))
            print(
                f"raw pool: {rate(n, t.seconds):9,.1f} msgs/s  ({t.seconds:.2f} s; {t.cpu_note()})"
            )

        t = send_classic(brand, recipients[:baseline_n], sink.port)
        baseline = rate(baseline_n, t.seconds)
        print(
            f"baseline: {baseline:9,.1f} msgs/s  ({baseline_n} in {t.seconds:.2f} s; "
            f"{t.cpu_note()})"
        )
        if with_breakdown:
            section(f"breakdown of notify at {delay_ms:g} ms (each part alone)")
            breakdown(
                prepared,
                work / f"parts-{delay_ms:g}",
                brand,
                recipients,
                sink.url,
                conns=connections,
            )
    print(f"best of {repeat}: notify {notify:,.1f} msgs/s, raw pool {raw:,.1f} msgs/s")
    expected = 2 * n * repeat + baseline_n + (n if with_breakdown else 0)
    accepted, sessions = sink.summary.get("accepted"), sink.summary.get("sessions")
    print(f"sink accepted {accepted} messages (expected {expected}) over {sessions} sessions")
    if accepted != expected:
        raise RuntimeError(f"the sink accepted {accepted} messages, expected {expected}")
    return Result(notify=notify, baseline=baseline, raw=raw)


def sweep(prepared: Path, work: Path, brand: Brand, n: int) -> None:
    """notify at several connection counts, to choose the defaults."""
    for delay_ms, counts in ((0.0, (4, 8, 16, 32)), (20.0, (16, 32, 64, 128))):
        section(f"sweep: notify at {delay_ms:g} ms, {n} messages")
        with smtp_sink(delay_ms) as sink:
            for c in counts:
                where = work / f"sweep-{delay_ms:g}-{c}"
                t = send_notify(prepared, where, brand, sink.url, n, c)
                print(f"{c:4d} connections: {rate(n, t.seconds):8,.1f} msgs/s  ({t.cpu_note()})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n0", type=int, default=2000, help="messages at 0 ms")
    parser.add_argument("--n20", type=int, default=1000, help="messages at 20 ms")
    parser.add_argument("--connections-0ms", type=int, default=16)
    parser.add_argument("--connections-20ms", type=int, default=64)
    parser.add_argument(
        "--baseline-n", type=int, help="messages for the mail-merge baseline (default: same N)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="notify and raw runs (best of)")
    parser.add_argument("--sweep-n", type=int, default=2000, help="messages per sweep run")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the cost breakdown")
    parser.add_argument("--sweep", action="store_true", help="also try other connection counts")
    parser.add_argument("--workdir", type=Path, help="keep files here instead of a temp dir")
    args = parser.parse_args(argv)

    brand = load_brand("congstar")
    print(machine_line())
    print(
        "brand congstar; PIN stage with cheap argon2 (t=1, m=64 KiB) only to prepare the state DB"
    )
    results: dict[float, Result] = {}
    with scratch_dir("sending", args.workdir) as work:
        n_max = max(args.n0, args.n20, args.sweep_n if args.sweep else 0)
        # ~1.5 % of synthetic customers have no usable address: draw enough reachable ones.
        with Timer() as t:
            prepared = prepare_state(work, brand, math.ceil(n_max * 1.05) + 100)
        print(f"prepared the state DB in {t.seconds:.1f} s")
        for delay_ms, n, conns in (
            (0.0, args.n0, args.connections_0ms),
            (20.0, args.n20, args.connections_20ms),
        ):
            results[delay_ms] = measure(
                delay_ms,
                n,
                conns,
                prepared,
                work,
                brand,
                min(n, args.baseline_n or n),
                args.repeat,
                with_breakdown=delay_ms == 0.0 and not args.no_breakdown,
            )
        if args.sweep:
            sweep(prepared, work, brand, args.sweep_n)

    section("results")
    zero, twenty = results[0.0], results[20.0]
    print(ratio_line("notify / baseline at 0 ms", zero.notify, zero.baseline))
    print(ratio_line("notify / raw at 20 ms", twenty.notify, twenty.raw))
    print(ratio_line("raw / baseline at 20 ms", twenty.raw, twenty.baseline))
    print(ratio_line("notify / raw at 0 ms", zero.notify, zero.raw, RAW_TARGET_0MS))
    print(
        ratio_line(
            "notify / baseline at 20 ms", twenty.notify, twenty.baseline, SPEEDUP_TARGET_20MS
        )
    )
    print(load_line())
    headline("sending_speedup_20ms", twenty.notify / twenty.baseline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
