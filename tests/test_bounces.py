"""Bounces: DSNs and bounce lists from real files, matched and recorded in a real state DB."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NO_PREFECT_PROBE
from dsn_fixtures import (
    BOUNCED_AT,
    Original,
    complaint,
    delayed_notice,
    hard_bounce,
    hard_bounce_with_original,
    hard_bounce_without_original,
    not_a_dsn,
    soft_bounce,
    write_eml,
)

from rollout import state
from rollout.bounces import (
    Bounce,
    BounceReport,
    Disposition,
    Kind,
    Result,
    apply_bounces,
    iter_bounces,
    read_message,
)
from rollout.model import PinSource
from rollout.settings import Settings
from rollout.state import CustomerRecord, Delivery, StateStore

CAMPAIGN = "c1"
SENT_AT = "2022-05-10T08:00:00+00:00"  # an hour before dsn_fixtures.BOUNCED_AT
PEOPLE = [  # brand, customer, address; the family shares one address across two brands
    ("congstar", "1", "max@example.org"),
    ("congstar", "2", "erika@example.org"),
    ("congstar", "3", "family@example.org"),
    ("jamobil", "7", "family@example.org"),
]


def msgid(brand: str, customer_id: str) -> str:
    return f"<{brand}-{customer_id}@mail.example.com>"


def send(store: StateStore, brand: str, customer_id: str, address: str) -> None:
    store.mark_sending(brand, CAMPAIGN, customer_id, msgid(brand, customer_id), address)
    store.mark_finished(brand, CAMPAIGN, customer_id, "sent", 250, "2.0.0 Ok: queued")


@pytest.fixture
def store(state_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[StateStore]:
    """On SQLite and on PostgreSQL."""
    monkeypatch.setattr(state.schema, "now", lambda: SENT_AT)
    with StateStore(state_url) as s:
        for brand, cid, address in PEOPLE:
            record = CustomerRecord(
                cid, "$argon2id$h", PinSource.GENERATED, "M", "M", address, None
            )
            s.record_chunk(brand, [record], [])
            send(s, brand, cid, address)
        yield s


def delivery(store: StateStore, brand: str, customer_id: str) -> Delivery:
    (found,) = (d for d in store.deliveries(brand, CAMPAIGN) if d.customer_id == customer_id)
    return found


def run(store: StateStore, *paths: Path, brands: set[str] | None = None) -> BounceReport:
    return apply_bounces(store, iter_bounces(paths), brands)


def counts(report: BounceReport) -> dict[str, int]:
    """The non-zero counts, so each test states only what it expects."""
    return {k: v for k, v in vars(report).items() if k not in ("examples", "kinds") and v}


# --- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipient",
    ["max@example.org", "MAX@Example.ORG", None],
    ids=["same", "other-case", "no-recipient-fields"],
)
@pytest.mark.parametrize("original", ["headers", "message"])
def test_a_hard_bounce_matches_by_message_id(
    store: StateStore, tmp_path: Path, recipient: str | None, original: Original
) -> None:
    dsn = hard_bounce(recipient, msgid("congstar", "1"), original=original)
    report = run(store, write_eml(tmp_path / "in", "1.eml", dsn))
    assert counts(report) == {"hard": 1}
    d = delivery(store, "congstar", "1")
    assert (d.status, d.permanent, d.code) == ("bounced", True, 550)
    assert d.reason.startswith("bounce user_unknown 5.1.1: 550 5.1.1 <address>: Recipient")
    assert "User unknown in virtual mailbox table" in d.reason  # unfolded
    assert "@" not in d.reason  # no customer address in what status and reports show


def test_without_original_headers_the_address_matches(store: StateStore, tmp_path: Path) -> None:
    report = run(
        store, write_eml(tmp_path, "x.eml", hard_bounce_without_original("Erika@example.org"))
    )
    assert counts(report) == {"hard": 1}
    assert delivery(store, "congstar", "2").status == "bounced"


def test_unknown_recipients_auto_replies_and_other_mail_are_reported_by_file(
    store: StateStore, tmp_path: Path
) -> None:
    stranger = write_eml(tmp_path, "stranger.eml", hard_bounce("nobody@example.org", "<a@b>"))
    holiday = write_eml(tmp_path, "holiday.eml", not_a_dsn())
    newsletter = tmp_path / "newsletter.eml"
    newsletter.write_bytes(b"From: shop@example.com\nSubject: Angebote\n\nNur heute!\n")
    report = run(store, stranger, holiday, newsletter, tmp_path / "missing")
    assert counts(report) == {"unmatched": 1, "autoreply": 1, "unparsed": 2}
    assert report.examples["unmatched"] == [str(stranger)]
    assert report.examples["unparsed"] == [
        f"{newsletter} (not a bounce)",
        f"{tmp_path / 'missing'} (no such file or directory)",
    ]
    assert {d.status for d in store.deliveries("congstar", CAMPAIGN)} == {"sent"}


def test_one_address_in_two_brands_is_ambiguous_unless_a_brand_is_chosen(
    store: StateStore, tmp_path: Path
) -> None:
    path = write_eml(tmp_path, "family.eml", hard_bounce_without_original("family@example.org"))
    report = run(store, path)
    assert counts(report) == {"ambiguous": 1}
    assert report.examples["ambiguous"] == [f"{path} (congstar 3, jamobil 7)"]
    assert delivery(store, "jamobil", "7").status == "sent"
    assert counts(run(store, path, brands={"jamobil"})) == {"hard": 1}
    assert (delivery(store, "congstar", "3").status, delivery(store, "jamobil", "7").status) == (
        "sent",
        "bounced",
    )


# --- what a notice does ---------------------------------------------------------------------


def test_a_soft_bounce_leaves_the_customer_for_resend(store: StateStore, tmp_path: Path) -> None:
    report = run(
        store,
        write_eml(tmp_path, "full.eml", soft_bounce("max@example.org", msgid("congstar", "1"))),
    )
    assert counts(report) == {"soft": 1}
    d = delivery(store, "congstar", "1")
    assert (d.status, d.permanent, d.code) == ("failed", False, 452)
    assert [x.customer_id for x in store.deliveries("congstar", CAMPAIGN, ["failed"])] == ["1"]


def test_a_delay_warning_changes_nothing(store: StateStore, tmp_path: Path) -> None:
    report = run(
        store,
        write_eml(tmp_path, "late.eml", delayed_notice("max@example.org", msgid("congstar", "1"))),
    )
    assert counts(report) == {"delayed": 1}
    assert delivery(store, "congstar", "1").status == "sent"


def test_soft_never_downgrades_hard_and_hard_upgrades_soft(
    store: StateStore, tmp_path: Path
) -> None:
    soft = write_eml(tmp_path, "a-soft.eml", soft_bounce("max@example.org", msgid("congstar", "1")))
    hard = write_eml(tmp_path, "b-hard.eml", hard_bounce("max@example.org", msgid("congstar", "1")))
    assert counts(run(store, soft, hard)) == {"soft": 1, "hard": 1}
    assert counts(run(store, soft)) == {"already": 1}
    assert delivery(store, "congstar", "1").status == "bounced"


def test_reading_the_same_files_again_changes_nothing(store: StateStore, tmp_path: Path) -> None:
    inbox = tmp_path / "bounces"
    write_eml(inbox, "1.eml", hard_bounce("max@example.org", msgid("congstar", "1")))
    write_eml(inbox, "2.eml", soft_bounce("erika@example.org", msgid("congstar", "2")))
    assert counts(run(store, inbox)) == {"hard": 1, "soft": 1}
    before = store.deliveries("congstar", CAMPAIGN)
    assert counts(run(store, inbox)) == {"already": 2}
    assert store.deliveries("congstar", CAMPAIGN) == before


def test_a_message_id_match_stands_when_the_bounce_names_another_recipient(
    store: StateStore, tmp_path: Path
) -> None:
    """Forwards, aliases and lists bounce with the address they forwarded to: the Message-ID
    still says whose e-mail it was."""
    forwarded = hard_bounce("max.mustermann@forward.example.net", msgid("congstar", "1"))
    report = run(store, write_eml(tmp_path, "fwd.eml", forwarded))
    assert counts(report) == {"hard": 1}
    d = delivery(store, "congstar", "1")
    assert (d.status, d.address) == ("bounced", "max@example.org")


def test_an_old_bounce_does_not_undo_a_later_send(
    store: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-read after a successful re-send (also one to a new address), an old bounce must not
    queue the customer again: staleness is by time, not by address."""
    full = write_eml(tmp_path, "full.eml", soft_bounce("max@example.org", msgid("congstar", "1")))
    gone = write_eml(tmp_path, "gone.eml", hard_bounce("erika@example.org", msgid("congstar", "2")))
    listed = tmp_path / "list.csv"
    listed.write_text("address,code,reason\nmax@example.org,452,mailbox full\n")
    os.utime(
        listed, (BOUNCED_AT.timestamp(), BOUNCED_AT.timestamp())
    )  # a list is as old as its file
    assert counts(run(store, full, listed)) == {"soft": 1, "already": 1}
    monkeypatch.setattr(state.schema, "now", lambda: "2022-05-11T08:00:00+00:00")
    send(store, "congstar", "1", "max@example.org")  # `rollout resend`, accepted this time
    send(store, "congstar", "2", "erika@new.example.org")  # a newer export changed the address
    report = run(store, full, gone, listed)
    assert counts(report) == {"stale": 3}
    assert report.examples["stale"] == [
        f"{full} (congstar 1: dated 2022-05-10 09:00 UTC, before the latest send)",
        f"{gone} (congstar 2: dated 2022-05-10 09:00 UTC, before the latest send)",
        f"{listed}:2 (congstar 1: dated 2022-05-10 09:00 UTC, before the latest send)",
    ]
    assert [d.status for d in store.deliveries("congstar", CAMPAIGN)][:2] == ["sent", "sent"]


# --- inputs ---------------------------------------------------------------------------------


def test_bounce_lists_with_either_delimiter(store: StateStore, tmp_path: Path) -> None:
    commas = tmp_path / "esp.csv"
    commas.write_text(
        "address,code,reason\n"
        "MAX@example.org,550,user unknown\n"
        'erika@example.org,452 4.2.2,"mailbox full, try later"\n'
        "stranger@example.org,5.1.1,\n"
        "family@example.org,whatever,\n",
        encoding="utf-8",
    )
    semicolons = tmp_path / "crm.csv"
    semicolons.write_bytes(
        "\ufeffAddress;Code;Reason\nfamily@example.org;5.7.1;abgelehnt\n".encode()
    )
    report = run(store, commas, semicolons, brands={"jamobil"})
    # congstar's max and erika are outside the brand filter here; 5.7.1 is a policy refusal
    assert counts(report) == {"soft": 1, "unmatched": 3, "unparsed": 1}
    assert report.examples["unparsed"] == [
        f"{commas}:5 (code 'whatever' is neither 4xx/4.x.x nor 5xx/5.x.x)"
    ]
    assert delivery(store, "jamobil", "7").reason == "bounce policy 5.7.1: abgelehnt"
    report = run(store, commas)
    assert counts(report) == {"hard": 1, "soft": 1, "unmatched": 1, "unparsed": 1}
    assert (delivery(store, "congstar", "1").code, delivery(store, "congstar", "2").reason) == (
        550,
        "bounce mailbox_full 4.2.2: mailbox full, try later",
    )


def test_maildir_mbox_and_folders_of_files(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    maildir = mailbox.Maildir(tmp_path / "in" / "Maildir")
    maildir.add(hard_bounce("max@example.org", "<m1@x>"))
    maildir.add(delayed_notice("max@example.org", "<m2@x>"))
    mbox = mailbox.mbox(tmp_path / "in" / "bounces")
    mbox.add(soft_bounce("erika@example.org", "<m3@x>"))
    mbox.add(not_a_dsn())
    mbox.flush()
    write_eml(
        tmp_path / "in" / "more", "x.eml", hard_bounce_with_original("a@example.org", "<m4@x>")
    )
    found = list(iter_bounces([tmp_path / "in"]))
    kinds = sorted((n.kind.value, n.message_id) for n in found if isinstance(n, Bounce))
    assert kinds == [
        ("autoreply", None),
        ("delayed", "<m2@x>"),
        ("hard", "<m1@x>"),
        ("hard", "<m4@x>"),
        ("soft", "<m3@x>"),
    ]
    assert [n.source for n in found if n.kind is Kind.AUTOREPLY] == [f"{tmp_path}/in/bounces#2"]
    assert {n.source.split("#")[0] for n in found} == {
        f"{tmp_path}/in/Maildir",
        f"{tmp_path}/in/bounces",
        f"{tmp_path}/in/more/x.eml",
    }


def test_global_dsn_with_two_recipients() -> None:
    """RFC 6533 (SMTPUTF8) reports, which the stdlib parses differently from RFC 3464 ones."""
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\r\nDate: Tue, 10 May 2022 11:00:00 +0200\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=global-delivery-status; boundary="b"\r\n'
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        b"--b\r\nContent-Type: message/global-delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; j\xc3\xbcrgen@example.org\r\nAction: failed\r\n"
        b"Status: 5.2.1\r\nDiagnostic-Code: smtp; 550 5.2.1 disabled\r\n\r\n"
        b"Final-Recipient: rfc822; max@example.org\r\nAction: relayed\r\nStatus: 2.0.0\r\n"
        b"\r\n--b\r\nContent-Type: message/global-headers\r\n\r\n"
        b"Message-ID: <congstar-1@mail.example.com>\r\nSubject: x\r\n\r\n--b--\r\n"
    )
    (hard, relayed) = list(read_message("g.eml", raw))
    assert isinstance(hard, Bounce) and isinstance(relayed, Bounce)
    # 5.2.1 "disabled": the mailbox exists but takes nothing now, so soft (resend tries again)
    assert (hard.kind, hard.addresses, hard.code) == (Kind.SOFT, ("jürgen@example.org",), 550)
    assert hard.message_id == relayed.message_id == "<congstar-1@mail.example.com>"
    assert relayed.kind is Kind.DELIVERED


def test_the_report_reads_well() -> None:
    report = BounceReport()
    for n in range(7):
        notice = Bounce(f"file{n}", Kind.HARD, None, (), 550, "5.1.1", "bounce", None)
        report.add(Result(notice, Disposition.HARD if n == 0 else Disposition.UNMATCHED))
    lines = report.lines()
    assert lines[0] == "bounces: 7 notices read"
    assert "  marked bounced (hard: dead address, not re-sent to it): 1" in lines
    assert lines[-1].strip() == "unparsed (not readable as a bounce), every one: 0"
    assert "      … and 1 more" in lines


# --- the flow, once, on the real engine -------------------------------------------------------


def test_the_flow_records_bounces_and_returns_the_summary(
    prefect_api: str, store: StateStore, tmp_path: Path
) -> None:
    from flows.bounces import bounces_flow

    path = write_eml(tmp_path, "1.eml", hard_bounce("max@example.org", msgid("congstar", "1")))
    given = Settings(state_dir=tmp_path / "state", state_url=store.url)
    lines, unparsed = bounces_flow([str(path)], given)
    assert "  marked bounced (hard: dead address, not re-sent to it): 1" in lines
    assert unparsed == 0
    assert delivery(store, "congstar", "1").status == "bounced"


def test_a_mistyped_state_dir_creates_nothing(tmp_path: Path) -> None:
    from flows.bounces import bounces_flow

    lines, _ = bounces_flow.fn([str(tmp_path)], Settings(state_dir=tmp_path / "stat"))  # no engine
    assert lines[0].startswith(f"bounces: no state database at {tmp_path}/stat/state.sqlite3;")
    assert not (tmp_path / "stat").exists()


# --- the command: dry run, JSON, exit codes ----------------------------------------------------


def test_dry_run_json_classifies_and_matches_without_changes_or_prefect(
    store: StateStore, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    write_eml(inbox, "1-gone.eml", hard_bounce("max@example.org", msgid("congstar", "1")))
    fwd = hard_bounce("erika@forward.example.net", msgid("congstar", "2"))
    write_eml(inbox, "2-forwarded.eml", fwd)
    write_eml(inbox, "3-late.eml", delayed_notice("max@example.org", msgid("congstar", "1")))
    write_eml(inbox, "4-holiday.eml", not_a_dsn())
    write_eml(inbox, "5-spam.eml", complaint("family@example.org", msgid("jamobil", "7")))
    (inbox / "6-junk.eml").write_bytes(b"Subject: hello\n\nnothing to see\n")
    before = {b: store.deliveries(b, CAMPAIGN) for b in ("congstar", "jamobil")}
    args = ["bounces", str(inbox), "--dry-run", "--json", "--state-dir", str(tmp_path / "state")]
    args += ["--state-url", store.url]
    done = subprocess.run(
        [sys.executable, "-c", NO_PREFECT_PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # one message stays unparsed: someone must look (3 would mean Prefect was imported)
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(
        set(r) >= {"file", "recipient", "kind", "status", "reason", "message_id", "match"}
        for r in records
    )
    short = [
        (Path(r["file"]).name, r["recipient"], r["kind"], (r["match"] or {}).get("outcome"))
        for r in records
    ]
    assert short == [
        ("1-gone.eml", "max@example.org", "hard", "hard"),
        ("2-forwarded.eml", "erika@forward.example.net", "hard", "hard"),
        ("3-late.eml", "max@example.org", "delayed", "delayed"),
        ("4-holiday.eml", "max@example.org", "autoreply", "autoreply"),
        ("5-spam.eml", "family@example.org", "complaint", "complaint"),
        ("6-junk.eml", None, "unparsed", None),
    ]
    assert records[1]["match"] == {
        "outcome": "hard",
        "brand": "congstar",
        "customer_id": "2",
        "by": "message_id",
    }
    assert records[0]["status"] == "5.1.1" and records[0]["message_id"] == msgid("congstar", "1")
    assert {b: store.deliveries(b, CAMPAIGN) for b in before} == before  # nothing changed
    assert not store.has_mark("jamobil", "7", "complaint")


def test_a_missing_path_is_exit_2_and_reads_nothing(
    store: StateStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    good = write_eml(tmp_path, "1.eml", hard_bounce("max@example.org", msgid("congstar", "1")))
    args = ["bounces", str(good), str(tmp_path / "typo"), "--state-dir", str(tmp_path / "state")]
    assert main(args) == 2
    assert (
        capsys.readouterr().err == f"rollout: error: no such file or directory: {tmp_path}/typo\n"
    )
    assert main([*args[:2], "--json", "--state-dir", str(tmp_path / "state")]) == 2  # no dry run
    assert "--json goes with --dry-run" in capsys.readouterr().err
    assert delivery(store, "congstar", "1").status == "sent"


def test_without_dry_run_every_unparsed_file_is_listed_and_the_exit_is_1(
    prefect_api: str, store: StateStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    inbox = tmp_path / "inbox"
    write_eml(inbox, "gone.eml", hard_bounce("max@example.org", msgid("congstar", "1")))
    for n in range(7):  # more than a report's usual examples
        (inbox / f"junk-{n}.eml").write_bytes(b"Subject: hi\n\nno bounce\n")
    state = ["--state-dir", str(tmp_path / "state"), "--state-url", store.url]
    assert main(["bounces", str(inbox), *state]) == 1
    out = capsys.readouterr().out
    assert all(f"{inbox}/junk-{n}.eml (not a bounce)" in out for n in range(7))
    assert delivery(store, "congstar", "1").status == "bounced"


def test_clearing_sender_problems_from_the_command(
    store: StateStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    store.add_mark("congstar", CAMPAIGN, "1", "sender_problem", "auth 5.7.26")
    state = ["--state-dir", str(tmp_path / "state"), "--state-url", store.url]
    assert main(["bounces", "--clear-sender-problems", *state]) == 0
    assert "congstar: 1 sender problems cleared" in capsys.readouterr().out
    assert not store.has_mark("congstar", "1", "sender_problem")
    typo = str(tmp_path / "stat")
    assert main(["bounces", "--clear-sender-problems", "--state-dir", typo]) == 2
    assert not (tmp_path / "stat").exists()


def test_an_undated_bounce_is_dated_by_its_file(
    store: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = hard_bounce("max@example.org", msgid("congstar", "1"))
    del dsn["Date"]
    path = write_eml(tmp_path, "undated.eml", dsn)
    os.utime(path, (BOUNCED_AT.timestamp(), BOUNCED_AT.timestamp()))  # arrived 09:00
    monkeypatch.setattr(state.schema, "now", lambda: "2022-05-11T08:00:00+00:00")
    send(store, "congstar", "1", "max@example.org")  # re-sent the next day, accepted
    report = run(store, path)
    assert counts(report) == {"stale": 1}
    assert delivery(store, "congstar", "1").status == "sent"
