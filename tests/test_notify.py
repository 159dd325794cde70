"""The notification stage against a real SMTP server (aiosmtpd on loopback) and a real state DB."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES
from sqlalchemy import text

from rollout.assign import assign_pins, local_hash_map
from rollout.brands import campaign_id, load_brand
from rollout.delivery import DeliverySettings
from rollout.exports import export_path, open_export
from rollout.keys import brand_keys
from rollout.notify import DeadlinePassed, check_deadline, notify_brand, resend_brand
from rollout.state import StateStore
from rollout.transports import open_transport
from smtp_server import SmtpTestServer, disconnect, lost_reply, reject, tempfail

FAST_RETRY = DeliverySettings(connections=3, max_attempts=4, backoff_base=0.01, backoff_max=0.05)


def prepared_state(
    state_dir: Path, brand: str = "jamobil", exports: Path = SAMPLES, url: str | None = None
) -> StateStore:
    """A state DB (SQLite in `state_dir`, or at `url`) after the PIN stage, as notify finds it."""
    b = load_brand(brand)
    store = StateStore.in_dir(state_dir, url=url)
    export = open_export(export_path(exports, b), b)
    keys = brand_keys(b)
    assign_pins(export, b, store, state_dir, local_hash_map(keys.hasher(), 2, keys.sealer))
    return store


def reachable(store: StateStore, brand: str) -> dict[str, str]:
    rows = store.db.execute(
        text("SELECT customer_id, email FROM customers WHERE brand = :b AND email_problem IS NULL"),
        {"b": brand},
    )
    return dict(rows.all())


def notify(store: StateStore, url: str, brand: str = "jamobil", **kw: object) -> object:
    settings = kw.pop("settings", FAST_RETRY)
    return asyncio.run(
        notify_brand(load_brand(brand), store, open_transport(url), settings, **kw)  # type: ignore[arg-type]
    )


def test_everyone_ends_accepted_once_or_failed_with_the_servers_words(
    tmp_path: Path, state_backend: str | None
) -> None:
    store = prepared_state(tmp_path, url=state_backend)
    people = reachable(store, "jamobil")
    refused = sorted(people.values())[:3]
    faults = [
        reject(refused, reply="550 5.1.1 <x>: Recipient address rejected: User unknown"),
        tempfail(sorted(people.values())[3:20], times=2),  # greylisting: fine on the 3rd try
        disconnect(every=17, times=4),  # 421 and hang up
    ]
    with SmtpTestServer(faults=faults) as server:
        summary = notify(store, server.url)
        received = server.received

    campaign = campaign_id(load_brand("jamobil"))
    outcome = {d.customer_id: d for d in store.deliveries("jamobil", campaign)}
    assert set(outcome) == set(people)  # nobody left out, nobody extra
    sent = {cid for cid, d in outcome.items() if d.status == "sent"}
    failed = {people[cid] for cid, d in outcome.items() if d.status == "failed"}
    assert failed == set(refused)
    assert all(
        "550 5.1.1" in d.reason and d.permanent for d in outcome.values() if d.status == "failed"
    )
    ids_at_server = Counter(r.message_id for r in received)
    assert set(ids_at_server.values()) == {1}  # accepted exactly once each
    assert set(ids_at_server) == {outcome[cid].message_id for cid in sent}
    assert {r.rcpt_tos[0] for r in received} == set(people.values()) - set(refused)
    assert summary.retried > 0 and summary.sent == len(sent)  # type: ignore[attr-defined]


def test_messages_on_the_wire_are_proper_mails_with_escaped_names(tmp_path: Path) -> None:
    store = prepared_state(tmp_path)
    with SmtpTestServer() as server:
        notify(store, server.url)
        received = server.received
    for r in received[:50]:
        msg = email.message_from_bytes(r.data, policy=email.policy.default)
        assert msg["Message-ID"] == r.message_id and msg["Date"] and "ja!mobil" in msg["From"]
        assert [p.get_content_type() for p in msg.walk()][1:] == ["text/plain", "text/html"]
        assert "Bcc" not in msg and "23. Mai 2022" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = "".join(
        email.message_from_bytes(r.data, policy=email.policy.default)
        .get_body(("html",))
        .get_content()  # type: ignore[union-attr]
        for r in received
    )
    assert "<script" not in html.lower()


def test_a_second_notify_sends_nothing(tmp_path: Path, state_backend: str | None) -> None:
    store = prepared_state(tmp_path, url=state_backend)
    with SmtpTestServer() as server:
        notify(store, server.url)
        first = server.accepted
        again = notify(store, server.url)
        assert server.accepted == first > 0
    assert again.sent == 0  # type: ignore[attr-defined]


def test_waves_split_the_brand_without_overlap_or_gap(
    tmp_path: Path, state_backend: str | None
) -> None:
    store = prepared_state(tmp_path, url=state_backend)
    people = reachable(store, "jamobil")
    waves: list[set[str]] = []
    with SmtpTestServer() as server:
        while True:
            before = len(server.received)
            notify(store, server.url, limit=100)
            wave = {r.rcpt_tos[0] for r in server.received[before:]}
            if not wave:
                break
            waves.append(wave)
    assert [len(w) for w in waves[:-1]] == [100] * (len(waves) - 1)
    assert sum(len(w) for w in waves) == len(set().union(*waves)) == len(people)


def test_a_lost_reply_is_unknown_and_only_resend_include_unknown_mails_again(
    tmp_path: Path, state_backend: str | None
) -> None:
    """The server kept the mail but its 250 never came: 'unknown', not silently retried."""
    store = prepared_state(tmp_path, url=state_backend)
    people = reachable(store, "jamobil")
    victim = sorted(people.values())[0]
    campaign = campaign_id(load_brand("jamobil"))
    brand = load_brand("jamobil")
    with SmtpTestServer(faults=[lost_reply([victim], times=1)]) as server:
        summary = notify(store, server.url)
        assert summary.unknown == 1  # type: ignore[attr-defined]
        notify(store, server.url)  # a second notify leaves them alone, too
        plain = asyncio.run(resend_brand(brand, store, open_transport(server.url), FAST_RETRY))
        after_plain = [r.message_id for r in server.received if r.rcpt_tos == (victim,)]
        asked = asyncio.run(
            resend_brand(brand, store, open_transport(server.url), FAST_RETRY, include_unknown=True)
        )
        copies = [r.message_id for r in server.received if r.rcpt_tos == (victim,)]
    [record] = [d for d in store.deliveries("jamobil", campaign) if d.address == victim]
    assert len(after_plain) == 1 and plain.sent == 0
    assert asked.sent == 1 and len(copies) == 2 and len(set(copies)) == 1  # same Message-ID
    assert record.status == "sent"
    assert len(server.received) == len(people) + 1


def test_a_blocked_campaign_stops_and_leaves_the_rest_pending(
    tmp_path: Path, state_backend: str | None
) -> None:
    store = prepared_state(tmp_path, url=state_backend)
    people = reachable(store, "jamobil")
    with SmtpTestServer(faults=[reject(at="MAIL", reply="554 5.7.1 Sender blocked")]) as server:
        summary = notify(store, server.url)
    assert summary.blocked and "554" in summary.blocked  # type: ignore[attr-defined]
    campaign = campaign_id(load_brand("jamobil"))
    assert store.deliveries("jamobil", campaign) == []  # nobody failed for the sender's problem
    assert store.pending_count("jamobil", campaign) == len(people)


def test_resend_reaches_exactly_the_failed_and_bounced(
    tmp_path: Path, state_backend: str | None
) -> None:
    store = prepared_state(tmp_path, url=state_backend)
    people = reachable(store, "jamobil")
    by_address = {a: cid for cid, a in people.items()}
    gone, full, hard, soft = sorted(people.values())[:4]
    faults = [reject([gone]), tempfail([full], reply="452 4.2.2 Mailbox full")]
    campaign = campaign_id(load_brand("jamobil"))
    with SmtpTestServer(faults=faults) as server:
        notify(store, server.url)
        # later: DSNs come in for two that were accepted, and the CRM fixes two addresses
        store.mark_bounced("jamobil", campaign, by_address[hard], True, 550, "5.1.1 unknown")
        store.mark_bounced("jamobil", campaign, by_address[soft], False, 452, "4.2.2 full")
        for old, new in ((gone, "neu@example.org"), (hard, "neu2@example.org")):
            store.db.execute(
                text("UPDATE customers SET email = :e WHERE customer_id = :c"),
                {"e": new, "c": by_address[old]},
            )
        server.set_faults()
        before = len(server.received)
        summary = asyncio.run(
            resend_brand(load_brand("jamobil"), store, open_transport(server.url), FAST_RETRY)
        )
        again = server.received[before:]
    expected = ["neu@example.org", "neu2@example.org", full, soft]
    assert sorted(r.rcpt_tos[0] for r in again) == sorted(expected)
    assert summary.sent == 4 and summary.skipped_permanent == []  # type: ignore[attr-defined]
    first_ids = {d.customer_id: d.message_id for d in store.deliveries("jamobil", campaign)}
    assert {r.message_id for r in again} <= set(first_ids.values())  # the same Message-IDs


def test_resend_does_not_retry_a_permanent_failure_at_the_same_address(
    tmp_path: Path, state_backend: str | None
) -> None:
    store = prepared_state(tmp_path, url=state_backend)
    gone = sorted(reachable(store, "jamobil").values())[0]
    with SmtpTestServer(faults=[reject([gone])]) as server:
        notify(store, server.url)
        before = len(server.received)
        summary = asyncio.run(
            resend_brand(load_brand("jamobil"), store, open_transport(server.url), FAST_RETRY)
        )
        assert len(server.received) == before
    assert len(summary.skipped_permanent) == 1  # type: ignore[attr-defined]


def test_the_deadline_guard() -> None:
    brand = load_brand("congstar")
    check_deadline(brand, date(2022, 5, 16), after_deadline=False)
    with pytest.raises(DeadlinePassed, match=r"16\.05\.2022.*--after-deadline"):
        check_deadline(brand, date(2022, 5, 17), after_deadline=False)
    check_deadline(brand, date(2026, 1, 1), after_deadline=True)


def test_a_kill_mid_send_then_notify_again_mails_nobody_twice(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    child_env, url = backend_env, backend_env.get("ROLLOUT_STATE_URL")
    store = prepared_state(tmp_path, url=url)
    people = reachable(store, "jamobil")
    store.close()
    args = ["notify", "--brand", "jamobil", "--state-dir", str(tmp_path), "--after-deadline"]
    with SmtpTestServer(delay=0.02) as server:
        sending = [*args, "--transport", server.url, "--connections", "2"]
        child = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *sending], env=child_env, cwd=REPO
        )
        try:
            deadline = time.monotonic() + 300
            while server.accepted < 40:
                assert child.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait()
        at_kill = server.accepted
        rerun = subprocess.run(
            [sys.executable, "-m", "flows.cli", *sending],
            env=child_env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        received = server.received
    assert 40 <= at_kill < len(people)
    assert Counter(Counter(r.message_id for r in received).values()) == {1: len(received)}
    with StateStore.in_dir(tmp_path, url=url) as s:
        statuses = Counter(
            d.status for d in s.deliveries("jamobil", campaign_id(load_brand("jamobil")))
        )
        unrecorded = _accepted_but_unrecorded(received, s)
    # whatever was in flight at the kill is 'unknown': reported (exit 1), not sent again
    assert statuses["sent"] + statuses["unknown"] == len(people)
    assert statuses["sent"] == len(received) - unrecorded
    assert rerun.returncode == (1 if statuses["unknown"] else 0), rerun.stderr


def _accepted_but_unrecorded(received: list[object], s: StateStore) -> int:
    """Mails the server took whose 250 the killed run never recorded: they are 'unknown'."""
    unknown = {
        d.message_id
        for d in s.deliveries("jamobil", campaign_id(load_brand("jamobil")), ["unknown"])
    }
    return sum(r.message_id in unknown for r in received)  # type: ignore[attr-defined]


def test_preview_changes_nothing_in_the_state_db(prefect_api: str, tmp_path: Path) -> None:
    from flows.preview import preview_flow
    from rollout.settings import Settings

    store = prepared_state(tmp_path / "state")
    store.close()
    db = tmp_path / "state" / "state.sqlite3"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    given = Settings(brands=["jamobil"], exports=SAMPLES, state_dir=tmp_path / "state")
    lines = preview_flow(given, str(tmp_path / "out"))
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    emls = list((tmp_path / "out" / "jamobil").glob("*.eml"))
    with StateStore.in_dir(tmp_path / "state") as s:
        assert len(emls) == len(reachable(s, "jamobil")) > 0
    assert "would be sent" in lines[0] and (tmp_path / "out" / "jamobil" / "index.html").is_file()
