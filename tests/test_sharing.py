"""Several runs mailing one brand from one PostgreSQL DB (workers on several hosts)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

from test_notify import FAST_RETRY, prepared_state, reachable

from rollout.brands import campaign_id, load_brand
from rollout.notify import NotifySummary, notify_brand
from rollout.state import StateStore
from rollout.transports import open_transport
from smtp_server import SmtpTestServer, disconnect, reject


def test_two_notifies_on_one_postgresql_mail_each_customer_exactly_once(
    tmp_path: Path, fresh_postgres_db: str
) -> None:
    url = fresh_postgres_db
    with prepared_state(tmp_path, url=url) as store:
        people = reachable(store, "jamobil")
    refused = sorted(people.values())[:2]
    summaries: list[NotifySummary] = []
    start = threading.Barrier(2)

    def run(server_url: str) -> None:
        with StateStore(url) as own:  # its own connection: another runner
            start.wait()
            transport = open_transport(server_url)
            brand = load_brand("jamobil")
            summaries.append(asyncio.run(notify_brand(brand, own, transport, FAST_RETRY)))

    faults = [reject(refused), disconnect(every=23, times=3)]
    # 20 ms a message: each run alone would take seconds, so both are surely sending at once.
    with SmtpTestServer(faults=faults, delay=0.02) as server:
        runs = [threading.Thread(target=run, args=(server.url,)) for _ in range(2)]
        for t in runs:
            t.start()
        for t in runs:
            t.join(timeout=600)
        received = server.received

    assert len(summaries) == 2
    at_server = Counter(r.rcpt_tos[0] for r in received)
    assert set(at_server.values()) == {1}  # nobody twice
    assert set(at_server) == set(people.values()) - set(refused)  # everyone else once
    assert all(s.sent > 0 for s in summaries)  # both runs mailed: they shared the brand
    assert sum(s.sent for s in summaries) == len(people) - len(refused)
    with StateStore(url) as store:
        statuses = Counter(
            d.status for d in store.deliveries("jamobil", campaign_id(load_brand("jamobil")))
        )
    assert statuses == {"sent": len(people) - 2, "failed": 2}
