"""deliver() against a real aiosmtpd server: every message accounted for, once."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest

from rollout.delivery import (
    DeliverySettings,
    DeliveryStats,
    Outcome,
    OutgoingMessage,
    RateLimiter,
    backoff_delay,
    deliver,
)
from rollout.transports import CampaignBlocked, open_transport
from smtp_server import (
    Fault,
    Received,
    SmtpTestServer,
    disconnect,
    drop,
    garbled_reply,
    lost_reply,
    reject,
    serve,
    slow_reply,
    tempfail,
)

FAST = DeliverySettings(connections=3, backoff_base=0.005, backoff_max=0.02)


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with serve() as s:
        yield s


def rcpt(n: int) -> str:
    return f"kunde{n}@example.org"


def outgoing(n: int, start: int = 0) -> Iterator[OutgoingMessage]:
    for i in range(start, start + n):
        mid = f"<legi-pin-congstar-20260701.{i}@congstar.de>"
        data = (
            f"From: congstar <service@congstar.de>\r\nTo: {rcpt(i)}\r\nMessage-ID: {mid}\r\n"
            f"Subject: Ihre neue Legi-PIN\r\n\r\nHallo Kunde {i},\r\n.\r\nbis bald\r\n"
        ).encode()
        yield OutgoingMessage(str(i), mid, "bounces@congstar.de", rcpt(i), data)


class ListJournal:
    """Records calls in order; `events` may be shared with the server's on_receive."""

    def __init__(self, events: list[tuple[str, str]] | None = None) -> None:
        self.events = events if events is not None else []
        self.outcomes: dict[str, Outcome] = {}

    async def sending(self, message: OutgoingMessage) -> None:
        self.events.append(("sending", message.message_id))

    def finished(self, outcome: Outcome) -> None:
        assert outcome.message_id not in self.outcomes, "finished twice"
        self.outcomes[outcome.message_id] = outcome
        self.events.append(("finished", outcome.message_id))

    def released(self, message: OutgoingMessage) -> None:
        self.events.append(("released", message.message_id))

    async def flush(self) -> None:
        pass

    def calls(self, kind: str) -> list[str]:
        return [mid for k, mid in self.events if k == kind]


def run(
    server: SmtpTestServer | str,
    messages: Iterable[OutgoingMessage],
    journal: ListJournal,
    settings: DeliverySettings = FAST,
) -> DeliveryStats:
    url = server if isinstance(server, str) else server.url
    return asyncio.run(deliver(messages, open_transport(url, env={}), journal, settings))


def counted(messages: Iterable[OutgoingMessage], taken: list[str]) -> Iterator[OutgoingMessage]:
    for m in messages:
        taken.append(m.message_id)
        yield m


def assert_accounted(stats: DeliveryStats, journal: ListJournal, taken: list[str]) -> None:
    """Each message taken ends in exactly one place; 'released' only after a 'sending'."""
    assert stats.taken == len(taken)
    statuses = Counter(o.status for o in journal.outcomes.values())
    assert (statuses["sent"], statuses["failed"], statuses["unknown"]) == (
        stats.sent,
        stats.failed,
        stats.unknown,
    )
    released = journal.calls("released")
    assert len(released) == len(set(released)) == stats.released
    assert not set(released) & set(journal.outcomes)
    assert set(released) <= set(journal.calls("sending"))


def accepted_ids(server: SmtpTestServer) -> list[str]:
    return [r.message_id or "" for r in server.received]


def test_faults_end_in_exactly_one_acceptance_or_a_reason(server: SmtpTestServer) -> None:
    events: list[tuple[str, str]] = []
    server.on_receive = lambda r: events.append(("accepted", r.message_id or ""))
    server.set_faults(
        tempfail([rcpt(1), rcpt(2)], times=2),  # greylisting
        reject([rcpt(3)]),  # unknown user at RCPT
        reject([rcpt(4)], at="DATA", reply="554 5.7.1 Content rejected"),
        disconnect(every=9),  # 421 and gone
        drop([rcpt(5), rcpt(6)], times=1),  # connection lost after the final dot
        drop([rcpt(7)], at="RCPT", times=1),  # connection lost before DATA: certainly not sent
    )
    journal, taken = ListJournal(events), list[str]()
    stats = run(server, counted(outgoing(40), taken), journal)

    assert_accounted(stats, journal, taken)
    assert (stats.sent, stats.failed, stats.left_pending, stats.unknown) == (36, 2, 0, 2)
    assert sorted(accepted_ids(server)) == sorted(  # each once, none of the failed
        o.message_id for o in journal.outcomes.values() if o.status == "sent"
    )
    failed = {o.customer_id: o for o in journal.outcomes.values() if o.status == "failed"}
    assert failed["3"].reason == "550 5.1.1 Mailbox unavailable (at RCPT TO)"
    assert (failed["3"].code, failed["3"].attempts) == (550, 1)
    assert failed["4"].reason.startswith("554 5.7.1 Content rejected")
    # After the final dot, silence is not retried: the server may hold the message.
    unknown = {o.customer_id: o for o in journal.outcomes.values() if o.status == "unknown"}
    assert sorted(unknown) == ["5", "6"]
    assert all(o.attempts == 1 and "during DATA" in o.reason for o in unknown.values())
    assert journal.outcomes[taken[7]].status == "sent" and journal.outcomes[taken[7]].attempts >= 2
    assert stats.retried >= 5  # 2 + 2 greylisted, 1 dropped before DATA, and the 421s
    assert journal.outcomes[taken[1]].attempts == 3
    # The journal said 'sending' before the server accepted, and 'finished' only after.
    for mid in accepted_ids(server):
        accepted_at = events.index(("accepted", mid))
        assert ("sending", mid) in events[:accepted_at]
        assert ("finished", mid) in events[accepted_at:]


@pytest.mark.parametrize(
    "fault", [lost_reply(every=7), slow_reply(3.0, every=7), garbled_reply(times=3)]
)
def test_an_uncertain_outcome_is_never_retried(server: SmtpTestServer, fault: Fault) -> None:
    # The server kept each of these messages, but the client never heard a 250: they must end
    # 'unknown', each accepted exactly once, never a second copy from an automatic retry.
    server.set_faults(fault)
    journal, taken = ListJournal(), list[str]()
    settings = DeliverySettings(connections=3, backoff_base=0.005, backoff_max=0.02)
    transport = open_transport(f"{server.url}?timeout=0.5", env={})
    stats = asyncio.run(deliver(counted(outgoing(30), taken), transport, journal, settings))
    assert_accounted(stats, journal, taken)
    ids = Counter(accepted_ids(server))
    assert set(ids.values()) == {1} and len(ids) == 30
    assert stats.unknown >= 3 and stats.sent + stats.unknown == 30
    unknown = {o.message_id for o in journal.outcomes.values() if o.status == "unknown"}
    assert all(journal.outcomes[m].attempts == 1 for m in unknown)


def test_retries_give_up_with_the_last_reason(server: SmtpTestServer) -> None:
    server.set_faults(tempfail([rcpt(0)], reply="452 4.2.2 Mailbox full"))
    journal = ListJournal()
    stats = run(server, outgoing(2), journal, DeliverySettings(max_attempts=3, backoff_base=0))
    outcome = journal.outcomes[next(outgoing(1)).message_id]
    assert (outcome.status, outcome.attempts, outcome.code) == ("failed", 3, 452)
    assert outcome.reason == "452 4.2.2 Mailbox full (at RCPT TO)"
    assert (stats.sent, stats.failed, stats.retried) == (1, 1, 2)


def test_sender_refused_mid_run_blocks_and_leaves_the_rest(server: SmtpTestServer) -> None:
    def block_after_ten(received: Received) -> None:
        if server.accepted == 10:
            server.set_faults(reject(at="MAIL", reply="554 5.7.1 Sender blocked by policy"))

    server.on_receive = block_after_ten
    journal, taken = ListJournal(), list[str]()
    settings = DeliverySettings(connections=2, max_in_flight=8)
    stats = run(server, counted(outgoing(1000), taken), journal, settings)

    assert_accounted(stats, journal, taken)
    assert isinstance(stats.blocked, CampaignBlocked)
    assert str(stats.blocked) == "554 5.7.1 Sender blocked by policy (at MAIL FROM)"
    # the other connection may have been past MAIL FROM already when the server turned
    assert stats.sent == len(server.received) in (10, 11) and stats.failed == 0
    assert 1 <= stats.released <= 2  # the transactions refused at MAIL FROM, back to pending
    assert stats.not_attempted >= 1
    assert len(taken) <= 10 + 2 + 8 + 1  # the input was read lazily, not drained


@pytest.mark.parametrize("url_kind", ["bad password", "nothing listening"])
def test_no_session_means_nothing_attempted(url_kind: str) -> None:
    journal, taken = ListJournal(), list[str]()
    settings = DeliverySettings(connections=2, connect_attempts=2, backoff_base=0.001)
    if url_kind == "bad password":
        with serve(credentials=("mailer", "right")) as server:
            transport = open_transport(
                f"{server.url}?insecure_auth=loopback",
                env={"ROLLOUT_SMTP_USER": "mailer", "ROLLOUT_SMTP_PASSWORD": "wrong"},
            )
            stats = asyncio.run(deliver(counted(outgoing(20), taken), transport, journal, settings))
        expected = "535 5.7.8 Authentication credentials invalid (at AUTH"
    else:
        with serve() as gone:
            url = gone.url
        stats = run(url, counted(outgoing(20), taken), journal, settings)
        expected = "no connection could be opened: cannot connect to smtp://127.0.0.1"
    assert_accounted(stats, journal, taken)
    assert isinstance(stats.blocked, CampaignBlocked)
    assert str(stats.blocked).startswith(expected)
    assert journal.events == [] and stats.not_attempted == len(taken) > 0


def test_connections_are_reused(server: SmtpTestServer) -> None:
    stats = run(server, outgoing(60), ListJournal(), DeliverySettings(connections=3))
    assert stats.sent == 60
    assert server.sessions <= 3
    assert len({r.session for r in server.received}) == server.sessions


def test_rate_limit_holds_at_the_server(server: SmtpTestServer) -> None:
    rate, burst = 50.0, 1
    settings = DeliverySettings(connections=4, rate_per_second=rate, burst=burst)
    stats = run(server, outgoing(100), ListJournal(), settings)
    assert stats.sent == 100
    times = sorted(r.accepted_at for r in server.received)
    assert times[-1] - times[0] >= (100 - burst) / rate - 0.08
    for window in (0.1, 0.5, 1.0):
        most = max(sum(1 for t in times if start <= t < start + window) for start in times)
        # A stalled machine can bunch what was in flight: at most one per connection, plus one
        # (slots missed during a stall are not made up in a burst).
        assert most <= rate * window + burst + settings.connections + 1, (window, most)


def test_rate_limiter_slots() -> None:
    now = [100.0]
    limiter = RateLimiter(10.0, burst=3, clock=lambda: now[0])
    assert [limiter.reserve() for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])
    now[0] += 1.0  # idle long enough: a full burst again, never more
    assert [limiter.reserve() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_backoff_is_full_jitter_and_capped() -> None:
    delays = [backoff_delay(attempt, 1.0, 60.0) for attempt in range(1, 2000)]
    assert all(0 <= d <= min(60.0, 2.0 ** min(n - 1, 9)) for n, d in enumerate(delays, start=1))
    assert max(delays) > 30  # capped, not stuck at small values


def test_idle_connection_is_closed_and_reopened(server: SmtpTestServer) -> None:
    async def trickle() -> AsyncIterator[OutgoingMessage]:
        first, second = outgoing(2)
        yield first
        await asyncio.sleep(0.3)
        yield second

    settings = DeliverySettings(connections=1, idle_timeout=0.05)
    transport = open_transport(server.url, env={})
    stats = asyncio.run(deliver(trickle(), transport, ListJournal(), settings))
    assert stats.sent == 2
    assert [r.session for r in server.received] == [1, 2]


def test_stop_event_leaves_the_rest_pending(server: SmtpTestServer) -> None:
    async def main() -> DeliveryStats:
        stop = asyncio.Event()

        def progress(outcome: Outcome) -> None:
            if len(journal.outcomes) == 5:
                stop.set()

        transport = open_transport(server.url, env={})
        messages = counted(outgoing(500), taken)
        return await deliver(messages, transport, journal, FAST, progress, stop=stop)

    journal, taken = ListJournal(), list[str]()
    stats = asyncio.run(main())
    assert_accounted(stats, journal, taken)
    # the transactions already under way when the fifth finished may still complete
    assert stats.blocked is None and stats.failed == 0
    assert 5 <= stats.sent <= 5 + FAST.connections - 1
    assert stats.not_attempted == len(taken) - stats.sent


def test_cancel_ends_promptly_and_keeps_the_record_true(server: SmtpTestServer) -> None:
    server.delay = 0.002
    journal = ListJournal()

    async def cancel_after(seconds: float, start: int) -> None:
        transport = open_transport(server.url, env={})
        task = asyncio.create_task(deliver(outgoing(5000, start), transport, journal, FAST))
        await asyncio.sleep(seconds)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    for run_no, seconds in enumerate((0.05, 0.08, 0.11, 0.14)):  # land at different moments
        asyncio.run(cancel_after(seconds, start=run_no * 5000))
    accepted = set(accepted_ids(server))
    # Counted, not timed: four cancelled runs together sent less than one run's input, and
    # nothing goes on after the cancels (no worker outlives its run).
    assert 0 < len(accepted) < 5000
    time.sleep(0.3)
    assert set(accepted_ids(server)) == accepted
    sent = {o.message_id for o in journal.outcomes.values() if o.status == "sent"}
    assert sent <= accepted <= set(journal.calls("sending"))
    assert len(accepted - sent) <= 4 * FAST.connections  # at most those in flight at a cancel
    assert not accepted & set(journal.calls("released"))


def test_broken_input_stops_and_propagates(server: SmtpTestServer) -> None:
    def broken() -> Iterator[OutgoingMessage]:
        yield from outgoing(3)
        raise ValueError("export row 4 is unreadable")

    with pytest.raises(ValueError, match="row 4"):
        run(server, broken(), ListJournal())


def test_maildir_through_deliver(tmp_path: Path) -> None:
    url = f"maildir:{tmp_path}/outbox"
    first = run(url, outgoing(30), ListJournal())
    again = run(url, outgoing(10), ListJournal())  # a re-delivery replaces, never duplicates
    files = list((tmp_path / "outbox" / "new").iterdir())
    assert (first.sent, again.sent, len(files)) == (30, 10, 30)
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(p["Message-ID"] for p in parsed) == sorted(m.message_id for m in outgoing(30))
    assert {p["Delivered-To"] for p in parsed} == {rcpt(i) for i in range(30)}


def test_an_unknown_outcome_stays_unknown_when_the_campaign_blocks(
    server: SmtpTestServer,
) -> None:
    # The connection died after message 0's DATA: the server may have it. Then the sender is
    # refused: message 0 stays unknown, message 1 (refused at MAIL) goes back to pending.
    server.set_faults(drop([rcpt(0)], times=1), Fault("MAIL", "550 5.7.1 Blocked", every=2))
    journal, taken = ListJournal(), list[str]()
    settings = DeliverySettings(connections=1, backoff_base=10)
    stats = run(server, counted(outgoing(5), taken), journal, settings)
    assert_accounted(stats, journal, taken)
    assert (stats.unknown, stats.released, stats.sent) == (1, 1, 0)
    assert journal.outcomes[taken[0]].status == "unknown"
    assert journal.calls("sending")[:2] == taken[:2]
    assert journal.calls("released") == [taken[1]]
