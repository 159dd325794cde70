"""What each kind of bounce does downstream: resend, unreachable, status, and never mailing a
customer who complained. A real SMTP server, a real state DB, the real core (no mocks)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from dsn_fixtures import (
    blocked_bounce,
    complaint,
    delayed_notice,
    hard_bounce,
    soft_bounce,
    write_eml,
)
from test_notify import FAST_RETRY, notify, prepared_state, reachable

from rollout.bounces import apply_bounces, iter_bounces
from rollout.brands import campaign_id, load_brand
from rollout.notify import resend_brand
from rollout.report import brand_status
from rollout.state import StateStore
from rollout.transports import open_transport
from smtp_server import SmtpTestServer

BRAND = "jamobil"


def test_resend_follows_the_kinds(tmp_path: Path) -> None:
    store = prepared_state(tmp_path / "state", BRAND)
    brand, campaign = load_brand(BRAND), campaign_id(load_brand(BRAND))
    people = reachable(store, BRAND)
    dead, full, blocked, angry, late = sorted(people.values())[:5]
    with SmtpTestServer() as server:
        notify(store, server.url)
    ids = {d.address: d.message_id for d in store.deliveries(BRAND, campaign)}
    now = datetime.now(UTC)  # the bounces come after the sends
    inbox = tmp_path / "bounces"
    write_eml(inbox, "dead.eml", hard_bounce(dead, ids[dead], date=now))
    write_eml(inbox, "full.eml", soft_bounce(full, ids[full], date=now))
    write_eml(inbox, "blocked.eml", blocked_bounce(blocked, ids[blocked], date=now))
    write_eml(inbox, "angry.eml", complaint(angry, ids[angry], date=now))
    write_eml(inbox, "late.eml", delayed_notice(late, ids[late]))

    report = apply_bounces(store, iter_bounces([inbox]))
    assert (report.hard, report.soft, report.complaint, report.delayed) == (1, 2, 1, 1)
    assert report.sender_problem == 1 and report.unparsed == 0

    status = brand_status(store, brand, now.date())
    assert status.complaints == 1
    assert status.sender_problems == {"reputation 5.7.1": 1}  # a blocker, by reason
    assert status.needs_attention
    by_customer = {d.address: d.status for d in store.deliveries(BRAND, campaign)}
    assert by_customer[late] == "sent" and by_customer[angry] == "sent"  # no state change

    with SmtpTestServer() as server:
        summary = asyncio.run(resend_brand(brand, store, open_transport(server.url), FAST_RETRY))
        again = sorted(r.rcpt_tos[0] for r in server.received)
    assert again == sorted([full, blocked])  # soft only: not the dead, the angry or the late
    assert summary.skipped_complaint == 0  # the complainer was 'sent': not even a candidate
    assert len(summary.skipped_permanent) == 1  # the dead address, listed instead

    status = brand_status(store, brand, now.date())
    assert status.sender_problems == {}  # the re-send went through: the blocker is gone
    bounced = [row for row in store.unreachable(BRAND) if row[4].startswith("bounced")]
    assert [row[3] for row in bounced] == [dead]  # for a letter or an SMS
    assert "@" not in bounced[0][4]  # the reason names no address


def test_a_customer_who_complained_is_never_mailed_again(tmp_path: Path) -> None:
    """Not by resend (even after a later soft bounce), nor by a new campaign's notify."""
    store = prepared_state(tmp_path / "state", BRAND)
    brand, campaign = load_brand(BRAND), campaign_id(load_brand(BRAND))
    angry = sorted(reachable(store, BRAND).values())[0]
    with SmtpTestServer() as server:
        notify(store, server.url)
    (delivery,) = (d for d in store.deliveries(BRAND, campaign) if d.address == angry)
    now = datetime.now(UTC)
    inbox = tmp_path / "bounces"
    write_eml(inbox, "a-angry.eml", complaint(angry, delivery.message_id, date=now))
    write_eml(inbox, "b-full.eml", soft_bounce(angry, delivery.message_id, date=now))
    report = apply_bounces(store, iter_bounces([inbox]))
    assert (report.complaint, report.soft) == (1, 1)
    assert apply_bounces(store, iter_bounces([inbox / "a-angry.eml"])).already == 1

    with SmtpTestServer() as server:
        summary = asyncio.run(resend_brand(brand, store, open_transport(server.url), FAST_RETRY))
        assert server.received == []
    assert summary.skipped_complaint == 1

    # A later campaign (a new mandatory date) starts everyone afresh, but not them.
    before = store.pending_count(BRAND, "another-campaign")
    store.clear_marks(BRAND, "complaint")
    assert store.pending_count(BRAND, "another-campaign") == before + 1


def test_a_sender_problem_is_a_blocker_until_cleared(tmp_path: Path) -> None:
    store = StateStore.in_dir(tmp_path / "state")
    with store:
        store.mark_sending("congstar", "c", "1", "<c-1@x>", "max@example.org")
        store.mark_finished("congstar", "c", "1", "sent", 250, "ok")
        path = write_eml(
            tmp_path, "spf.eml", blocked_bounce("max@example.org", "<c-1@x>", datetime.now(UTC))
        )
        assert apply_bounces(store, iter_bounces([path])).sender_problem == 1
        assert store.mark_counts("congstar", "c")["sender_problem"] == {"reputation 5.7.1": 1}
        assert store.clear_marks("congstar", "sender_problem") == 1  # `--clear-sender-problems`
        assert store.mark_counts("congstar", "c")["sender_problem"] == {}
        (d,) = store.deliveries("congstar", "c")
        assert (d.status, d.permanent) == ("failed", False)  # still for resend
