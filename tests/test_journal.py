"""The journal against a real SMTP server and a real state DB: on PostgreSQL, group commit
(fewer commits than marks, deliver returns once all are committed); on both backends,
'sending' committed before the server sees the message and a failed commit stops delivery."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.exc import DBAPIError
from test_delivery import outgoing
from test_notify import notify, prepared_state

from rollout.brands import campaign_id, load_brand
from rollout.delivery import DeliverySettings, DeliveryStats, deliver
from rollout.journal import DirectJournal, GroupCommit, GroupJournal, journal_for
from rollout.state import StateStore
from rollout.state.claims import _CLAIM_ON_POSTGRESQL
from rollout.state.connect import postgresql_params, sqlite_path
from rollout.state.pg_journal import BATCH, PostgresJournalWriter
from rollout.transports import open_transport
from smtp_server import Received, SmtpTestServer

BRAND, CAMPAIGN = "congstar", "legi-pin-congstar-20260701"


@dataclass
class Journalled:
    stats: DeliveryStats
    batches: GroupCommit | None  # PostgreSQL's group commit: what it committed
    at_return: Counter[str]  # the statuses in the DB as deliver returned


def send_journalled(
    url: str, state: str, n: int, connections: int, max_batch: int | None = None
) -> Journalled:
    """`n` messages through `deliver`, journalled as notify does on the state DB's backend
    (on PostgreSQL in batches of at most `max_batch`)."""

    async def run(store: StateStore) -> Journalled:
        journal: DirectJournal | GroupJournal = journal_for(store, BRAND, CAMPAIGN)
        if isinstance(journal, GroupJournal):
            journal = GroupJournal(PostgresJournalWriter(state, BRAND, CAMPAIGN), max_batch)
        settings = DeliverySettings(connections=connections)
        async with journal:
            stats = await deliver(outgoing(n), open_transport(url), journal, settings)
            at_return = statuses(state)
        batches = journal.batches if isinstance(journal, GroupJournal) else None
        return Journalled(stats, batches, at_return)

    with StateStore(state) as store:
        return asyncio.run(run(store))


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


def test_marks_that_meet_share_a_commit_and_everyone_is_sent_once(fresh_postgres_db: str) -> None:
    n = 400
    StateStore(fresh_postgres_db).close()
    with SmtpTestServer() as server:
        run = send_journalled(server.url, fresh_postgres_db, n, connections=8)
        received = server.received

    assert run.stats.sent == n and run.batches is not None
    assert run.batches.writes == 2 * n  # 'sending' and 'sent' for each
    assert 0 < run.batches.commits < run.batches.writes  # marks that met were committed together
    # Every customer was taken by the server once, and the DB says 'sent' for each as soon as
    # deliver returned: it flushed the outcomes first.
    assert Counter(r.message_id for r in received) == {m.message_id: 1 for m in outgoing(n)}
    assert run.at_return == Counter({"sent": n})


def test_deliver_returns_once_every_outcome_is_committed(fresh_postgres_db: str) -> None:
    state, n = fresh_postgres_db, 20
    StateStore(state).close()
    last = list(outgoing(n))[-1].message_id
    other = psycopg.connect(**postgresql_params(state), autocommit=True)

    def hold_the_row(received: Received) -> None:  # the last message's 'sent' has to wait
        if received.message_id == last:
            other.execute("BEGIN")
            other.execute("SELECT 1 FROM deliveries WHERE message_id = %s FOR UPDATE", [last])
            threading.Timer(0.3, other.execute, ["COMMIT"]).start()

    with SmtpTestServer(on_receive=hold_the_row) as server:
        run = send_journalled(server.url, state, n, connections=1)
    other.close()
    assert run.at_return == Counter({"sent": n})


def test_one_commit_per_mark_without_grouping(fresh_postgres_db: str) -> None:
    """The counting itself is right: with batches of one, commits and marks agree."""
    n = 50
    StateStore(fresh_postgres_db).close()
    with SmtpTestServer() as server:
        run = send_journalled(server.url, fresh_postgres_db, n, connections=4, max_batch=1)
    assert run.stats.sent == n and run.batches is not None
    assert run.batches.commits == run.batches.writes == 2 * n
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


FULL = "database or disk is full (test)"


def refuse(state: str, event: str, when: str = "true") -> None:
    """The state DB refuses `event` on deliveries where `when` holds, as a full disk would."""
    with StateStore(state) as store:
        if store.dialect == "sqlite":
            statements = [
                f"""CREATE TRIGGER refuse BEFORE {event} ON deliveries WHEN {when}
                BEGIN SELECT RAISE(ABORT, '{FULL}'); END"""
            ]
        else:
            statements = [
                f"""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                    IF {when} THEN RAISE EXCEPTION '{FULL}'; END IF;
                    RETURN NEW;
                END $$""",
                f"CREATE TRIGGER refuse BEFORE {event} ON deliveries "
                "FOR EACH ROW EXECUTE FUNCTION refuse()",
            ]
        for statement in statements:
            store.db.exec_driver_sql(statement)


def refuse_the_20th_outcome(state: str) -> None:
    sent = "(SELECT count(*) FROM deliveries WHERE status = 'sent')"
    refuse(state, "UPDATE", when=f"NEW.status = 'sent' AND {sent} >= 19")


def test_a_failed_commit_stops_delivery_and_propagates(state_url: str) -> None:
    n = 300
    refuse_the_20th_outcome(state_url)
    with (
        SmtpTestServer() as server,
        pytest.raises((DBAPIError, psycopg.Error), match="disk is full"),
    ):
        send_journalled(server.url, state_url, n, connections=4)
    accepted = server.accepted
    assert accepted < n  # it stopped
    found = statuses(state_url)
    # The failed commit took the outcomes with it that it held. What the server took is 'sent'
    # or still 'sending' (reported 'unknown' next time): none of it is pending again, so none
    # of it is mailed twice.
    assert 0 < found["sent"] <= accepted and found["sent"] + found["sending"] >= accepted
    assert set(found) <= {"sent", "sending"}


def test_no_message_is_handed_over_before_its_sending_mark_is_recorded(state_url: str) -> None:
    """The mark's commit overlaps MAIL FROM and RCPT TO, but DATA waits for it: when it
    fails, the server has taken nothing, and delivery stops with the DB's error."""
    refuse(state_url, "INSERT")  # every 'sending' mark (a new delivery row)
    refused = pytest.raises((DBAPIError, psycopg.Error), match="disk is full")
    with SmtpTestServer() as server, refused:
        send_journalled(server.url, state_url, 20, connections=4)
    assert server.accepted == 0 and server.received == []
    assert statuses(state_url) == Counter()


def test_claims_and_journal_batches_find_rows_by_key_however_the_campaign_grew(
    fresh_postgres_db: str,
) -> None:
    """A notify run plans its statements once, while the campaign has few deliveries, and
    keeps those plans while it grows to millions. Planned as joins (a scan of the campaign's
    deliveries per claimed page, per journal batch), that was quadratic in the wave. The plans
    in use once the campaign has grown must find each row by its key."""
    url = fresh_postgres_db
    with StateStore(url) as store:
        store.db.exec_driver_sql(
            "INSERT INTO customers (brand, customer_id, pin_hash, pin_source, pin_since, "
            "first_name, last_name, email, updated_at) SELECT 'congstar', lpad(i::text, 7, '0'),"
            " 'h', 'kept', 'now', 'A', 'B', 'a' || i || '@example.com', 'now' "
            "FROM generate_series(1, 40000) i"
        )
        store.db.exec_driver_sql("ANALYZE")  # as a wave begins: nothing mailed yet
    claim = str(_CLAIM_ON_POSTGRESQL.compile(dialect=psycopg_dialect.dialect()))  # type: ignore[no-untyped-call]
    writer = PostgresJournalWriter(url, BRAND, CAMPAIGN)
    plans: list[str] = []
    with psycopg.connect(**postgresql_params(url), autocommit=True) as db:
        db.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                        "SET plan_cache_mode = force_generic_plan"):  # fmt: skip
            db.execute(setting)

        def run_both(after: int) -> None:  # each rolled back: the DB stays as it is
            first = f"{after + 1:07d}"
            claim_args = {"brand": BRAND, "campaign": CAMPAIGN, "after": f"{after:07d}",
                          "limit": 100, "at": "now", "runner": "r"}  # fmt: skip
            batch_args = writer.params(
                [
                    ("sending", [(first, "<m>", "a@example.com")]),
                    ("finished", [(f"{after:07d}", "sent", 250, "250 OK", False)]),
                    ("released", [f"{after - 1:07d}"]),
                ]
            )
            for statement, args in ((claim, claim_args), (BATCH, batch_args)):
                with db.transaction(force_rollback=True):
                    db.execute(statement, args, prepare=True)

        for _ in range(6):  # planned (and kept) while the campaign is empty
            run_both(after=10)
        db.execute(
            "INSERT INTO deliveries (brand, campaign, customer_id, message_id, address, status, "
            f"attempts, updated_at) SELECT 'congstar', '{CAMPAIGN}', lpad(i::text, 7, '0'), "
            "'<m' || i || '>', 'a' || i || '@example.com', 'sent', 1, 'now' "
            "FROM generate_series(1, 30000) i"
        )
        db.execute("SET client_min_messages = log")  # auto_explain's plans come to us
        run_both(after=29000)
    claim_plan, batch_plan = [p for p in plans if "Query Text" in p][-2:]
    assert unkeyed_scans(claim_plan) == [], claim_plan
    assert unkeyed_scans(batch_plan) == [], batch_plan


def unkeyed_scans(plan: str) -> list[str]:
    """The scans of deliveries in `plan` that do not look a row up by its whole key: a
    sequential scan, or an index scan over a range (a brand's or a campaign's rows)."""
    lines = plan.splitlines()
    found = []
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        if re.search(r"(Seq|Bitmap Heap) Scan on deliveries", line):
            found.append(line.strip())
        elif re.search(r"Index (Only )?Scan using \w+ on deliveries", line) and (
            "customer_id =" not in after  # its condition, on the next line
        ):
            found.append(f"{line.strip()} {after.strip()}")
    return found
