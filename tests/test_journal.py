"""The journal's group commit against a real SMTP server and a real state DB: fewer commits
than marks, 'sending' committed before the server sees the message, a failed commit stops."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from test_delivery import outgoing
from test_notify import notify, prepared_state

from rollout.brands import campaign_id, load_brand
from rollout.delivery import DeliverySettings, DeliveryStats, deliver
from rollout.journal import StoreJournal
from rollout.state import StateStore
from rollout.state.connect import sqlite_path
from rollout.transports import open_transport
from smtp_server import Received, SmtpTestServer

BRAND, CAMPAIGN = "congstar", "legi-pin-congstar-20260701"


class CountingStore(StateStore):
    """The real state store; it counts the transactions it committed and the marks in them."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.commits = 0
        self.marks = 0

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with super().transaction() as db:
            yield db
        self.commits += 1

    def mark_sending_many(self, brand: str, campaign: str, sends: Sequence[Any]) -> None:
        self.marks += len(sends)
        super().mark_sending_many(brand, campaign, sends)

    def mark_finished_many(self, brand: str, campaign: str, outcomes: Sequence[Any]) -> None:
        self.marks += len(outcomes)
        super().mark_finished_many(brand, campaign, outcomes)

    def release_many(self, brand: str, campaign: str, customer_ids: Sequence[str]) -> None:
        self.marks += len(customer_ids)
        super().release_many(brand, campaign, customer_ids)


@dataclass
class Journalled:
    stats: DeliveryStats
    store: CountingStore  # the journal's own, opened on its thread
    at_return: Counter[str]  # the statuses in the DB as deliver returned


def send_journalled(
    url: str, state: str, n: int, connections: int, max_batch: int | None = None
) -> Journalled:
    opened: list[CountingStore] = []

    def open_store() -> CountingStore:
        opened.append(CountingStore(state))
        return opened[-1]

    async def run() -> tuple[DeliveryStats, Counter[str]]:
        settings = DeliverySettings(connections=connections)
        async with StoreJournal(open_store, BRAND, CAMPAIGN, max_batch) as journal:
            stats = await deliver(outgoing(n), open_transport(url), journal, settings)
            return stats, statuses(state)

    stats, at_return = asyncio.run(run())
    (store,) = opened  # one connection
    return Journalled(stats, store, at_return)


def statuses(state: str) -> Counter[str]:
    with StateStore(state, read_only=True) as store:
        return Counter(d.status for d in store.deliveries(BRAND, CAMPAIGN))


@contextmanager
def another_writer(state: str) -> Iterator[None]:
    """On SQLite, another connection takes the write lock every 50 ms for 20 ms, so the
    journal's commits wait for it (as they would for a slow disk). PostgreSQL's commits are a
    round trip to the server already."""
    path = sqlite_path(state)
    if path is None:
        yield
        return
    stop = threading.Event()

    def hold() -> None:
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            stop.wait(0.02)
            db.execute("COMMIT")
            time.sleep(0.03)
        db.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_marks_that_meet_share_a_commit_and_everyone_is_sent_once(state_url: str) -> None:
    n = 400
    StateStore(state_url).close()
    with SmtpTestServer() as server, another_writer(state_url):  # commits take their time
        run = send_journalled(server.url, state_url, n, connections=8)
        received = server.received

    assert run.stats.sent == n
    assert run.store.marks == 2 * n  # 'sending' and 'sent' for each
    assert 0 < run.store.commits < run.store.marks  # marks that met were committed together
    # Every customer was taken by the server once, and the DB says 'sent' for each as soon as
    # deliver returned: it flushed the outcomes first.
    assert Counter(r.message_id for r in received) == {m.message_id: 1 for m in outgoing(n)}
    assert run.at_return == Counter({"sent": n})


def test_deliver_returns_once_every_outcome_is_committed(tmp_path: Path) -> None:
    path, n = tmp_path / "state.sqlite3", 20
    state = f"sqlite:///{path}"
    StateStore(state).close()
    last = list(outgoing(n))[-1].message_id
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def hold_the_lock(received: Received) -> None:  # the last message's 'sent' has to wait
        if received.message_id == last:
            other.execute("BEGIN IMMEDIATE")
            threading.Timer(0.3, other.execute, ["COMMIT"]).start()

    with SmtpTestServer(on_receive=hold_the_lock) as server:
        run = send_journalled(server.url, state, n, connections=1)
    other.close()
    assert run.at_return == Counter({"sent": n})


def test_one_commit_per_mark_without_grouping(state_url: str) -> None:
    """The counting itself is right: with batches of one, commits and marks agree."""
    n = 50
    StateStore(state_url).close()
    with SmtpTestServer() as server:
        run = send_journalled(server.url, state_url, n, connections=4, max_batch=1)
    assert run.stats.sent == n
    assert run.store.commits == run.store.marks == 2 * n
    assert run.at_return == Counter({"sent": n})


def test_sending_is_committed_before_the_server_sees_the_message(
    tmp_path: Path, state_url: str
) -> None:
    url = None if state_url.startswith("sqlite") else state_url
    store = prepared_state(tmp_path, url=url)
    seen: list[str | None] = []

    def look_up(received: Received) -> None:  # in the server's thread, before its 250
        with StateStore(store.url, read_only=True) as reader:  # another connection
            row = reader.db.execute(
                text("SELECT status FROM deliveries WHERE message_id = :m"),
                {"m": received.message_id},
            ).first()
        seen.append(row[0] if row else None)

    with SmtpTestServer(on_receive=look_up) as server, another_writer(store.url):
        summary = notify(store, server.url, settings=DeliverySettings(connections=6), limit=120)
    assert summary.sent == len(seen) == 120  # type: ignore[attr-defined]
    assert Counter(seen) == Counter({"sending": 120})  # committed: another connection sees it
    campaign = campaign_id(load_brand("jamobil"))
    assert Counter(d.status for d in store.deliveries("jamobil", campaign)) == {"sent": 120}


def test_a_failed_commit_stops_delivery_and_propagates(tmp_path: Path) -> None:
    path, n = tmp_path / "state.sqlite3", 300
    state = f"sqlite:///{path}"
    StateStore(state).close()
    with sqlite3.connect(path) as db:  # the DB refuses the 20th outcome, as a full disk would
        db.execute(
            """
            CREATE TRIGGER refuse BEFORE UPDATE ON deliveries
            WHEN NEW.status = 'sent' AND (SELECT count(*) FROM deliveries
                                          WHERE status = 'sent') >= 19
            BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END
            """
        )
    with SmtpTestServer() as server, pytest.raises(DBAPIError, match="disk is full"):
        send_journalled(server.url, state, n, connections=4)
    accepted = server.accepted
    assert accepted < n  # it stopped
    found = statuses(state)
    # The failed commit took the outcomes with it that it held. What the server took is 'sent'
    # or still 'sending' (reported 'unknown' next time): none of it is pending again, so none
    # of it is mailed twice.
    assert 0 < found["sent"] <= 19 and found["sent"] + found["sending"] >= accepted
    assert set(found) <= {"sent", "sending"}
