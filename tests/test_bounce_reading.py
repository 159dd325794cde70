"""Reading the kinds of bounce the issue names, each in a small hand-made message of its shape:
the tolerance the DSN reader needs, the plain-text formats, and where the Message-ID comes from.
"""

from __future__ import annotations

import pytest

from rollout.bounces import Bounce, Kind, read_message

HEAD = (
    "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
    "To: noreply@congstar.de\n"
    "Date: Tue, 10 May 2022 11:00:00 +0200\n"
)


def notices(raw: str) -> list[Bounce]:
    found = list(read_message("x.eml", raw.encode()))
    assert all(isinstance(n, Bounce) for n in found), found
    return [n for n in found if isinstance(n, Bounce)]


def test_dsn_blocks_without_blank_lines_misspelt_and_unindented() -> None:
    raw = (
        HEAD + "Subject: Undelivered Mail\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nSorry.\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipent: rfc822; max@example.org\n"  # misspelt
        "Action: failed\nStatus: 5.1.1\n"
        "Diagnostic-code: smtp; 550 5.1.1 The email account that you tried to reach\n"
        "does not exist. Please try double-checking the recipient's email address\n"  # no indent
        "Final-Recipient: rfc822; erika@example.org\n"  # no blank line before it
        "Action: expired\nStatus: 4.4.7\n"
        "Diagnostic-Code: X-Postfix; delivery temporarily suspended: connection timed out\n"
        "--b--\n"
    )
    max_, erika = notices(raw)
    assert (max_.addresses, max_.kind, max_.status) == (("max@example.org",), Kind.HARD, "5.1.1")
    assert "double-checking" in max_.reason and "@" not in max_.reason
    assert (erika.addresses, erika.kind) == (("erika@example.org",), Kind.SOFT)
    assert erika.reason.startswith("bounce expired 4.4.7:")


def test_a_dsn_inside_a_forwarded_bounce_and_the_original_id_inside_it() -> None:
    raw = (
        "From: helpdesk@example.com\nTo: noreply@congstar.de\nSubject: Fwd: Undeliverable\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="outer"\n\n'
        "--outer\nContent-Type: text/plain\n\nSee below.\n"
        "--outer\nContent-Type: message/rfc822\n\n" + HEAD + "Subject: Undeliverable\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="in"\n\n'
        "--in\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; max@example.org\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\n\n"
        "--in\nContent-Type: text/rfc822-headers\n\n"
        "Message-ID: <congstar-1@mail.example.com>\nSubject: PIN\n\n"
        "--in--\n\n--outer--\n"
    )
    (n,) = notices(raw)
    assert (n.kind, n.message_id) == (Kind.SOFT, "<congstar-1@mail.example.com>")
    assert n.reason.startswith("bounce mailbox_full 5.2.2")


def test_dsn_fields_sent_as_plain_text() -> None:
    raw = (
        HEAD + "Subject: Delivery Status Notification (Failure)\n\n"
        "Your message could not be delivered.\n\n"
        "Reporting-MTA: dns; mx.example.net\n\n"
        "Original-Recipient: rfc822;max@example.org\n"
        "Final-Recipient: rfc822;max.mustermann@example.net\n"
        "Action: failed\nStatus: 5.7.1\n"
        "Diagnostic-Code: smtp; 550 5.7.1 Email rejected per DMARC policy for congstar.de\n"
    )
    (n,) = notices(raw)
    assert n.addresses == ("max@example.org", "max.mustermann@example.net")
    assert (n.kind, n.sender_problem) == (Kind.SOFT, True)


EXIM = """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  max@example.org
    SMTP error from remote mail server after RCPT TO:<max@example.org>:
    host mx.example.org [192.0.2.20]: 550 5.2.2 <max@example.org>: Mailbox full
  erika@example.net
    (generated from erika@example.org)
    SMTP error from remote mail server after RCPT TO:<erika@example.net>:
    host mx.example.net [192.0.2.21]: 550 5.1.1 <erika@example.net>: User unknown

------ This is a copy of the message, including all the headers. ------

Message-Id: <congstar-1@mail.example.com>
From: congstar <noreply@congstar.de>
To: max@example.org
"""
QMAIL = """Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<max@example.org>:
192.0.2.153 does not like recipient.
Remote host said: 554 5.7.1 Client host [192.0.2.9] blocked using zen.spamhaus.org
Giving up on 192.0.2.153.

--- Below this line is a copy of the message.

Message-ID: <congstar-1@mail.example.com>
From: noreply@congstar.de
"""
SENDMAIL_V5 = """   ----- Transcript of session follows -----
550 max@example.org... User unknown
421 example.net (smtp)... Deferred: Connection timed out

   ----- Unsent message follows -----
Message-Id: <congstar-1@mail.example.com>
From: noreply@congstar.de
To: max@example.org
"""
GMAIL = """Delivery to the following recipient failed permanently:

     max@example.org

Technical details of permanent failure:
Google tried to deliver your message, but it was rejected by the server for the recipient
domain example.org by mx.example.org. [192.0.2.1].

The error that the other server returned was:
550 5.1.1 <max@example.org>: Recipient address rejected: User unknown in local recipient table

----- Original message -----

Message-ID: <congstar-1@mail.example.com>
"""
DELAY = """This is an automatically generated Delivery Status Notification

THIS IS A WARNING MESSAGE ONLY.

YOU DO NOT NEED TO RESEND YOUR MESSAGE.

Delivery to the following recipient has been delayed:

     max@example.org

Message will be retried for 2 more day(s)
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (EXIM, [("max@example.org", Kind.SOFT), ("erika@example.net", Kind.HARD)]),
        (QMAIL, [("max@example.org", Kind.SOFT)]),
        (SENDMAIL_V5, [("max@example.org", Kind.HARD)]),
        (GMAIL, [("max@example.org", Kind.HARD)]),
        (DELAY, [("max@example.org", Kind.DELAYED)]),
    ],
    ids=["exim", "qmail", "sendmail-v5", "gmail", "delay-warning"],
)
def test_plain_text_bounces(body: str, expected: list[tuple[str, Kind]]) -> None:
    found = notices(HEAD + "Subject: Mail delivery failed\n\n" + body)
    assert [(n.recipient, n.kind) for n in found] == expected
    if body is not DELAY:
        assert {n.message_id for n in found} == {"<congstar-1@mail.example.com>"}
    if body is EXIM:  # the alias we sent to comes first, as Original-Recipient does
        assert found[1].addresses == ("erika@example.org", "erika@example.net")
    if body is QMAIL:
        assert found[0].sender_problem  # our IP on a blocklist


def test_auto_replies_and_other_mail() -> None:
    (n,) = notices(
        "From: Max <max@example.org>\nTo: noreply@congstar.de\n"
        "Subject: Out of Office: Deine Legi-PIN\nAuto-Submitted: auto-replied\n\nBin weg.\n"
    )
    assert (n.kind, n.addresses) == (Kind.AUTOREPLY, ("max@example.org",))
    (other,) = read_message("y.eml", b"From: a@example.com\nSubject: hi\n\nhello\n")
    assert not isinstance(other, Bounce) and other.why == "not a bounce"
    (broken,) = read_message("z.eml", b"\x00\xff garbage")
    assert not isinstance(broken, Bounce)


@pytest.mark.parametrize(
    ("status", "code", "words", "category", "hard", "ours"),
    [
        (
            "5.1.1",
            550,
            "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown",
            "user_unknown",
            True,
            False,
        ),
        ("5.0.0", 550, "550 No such user here", "user_unknown", True, False),
        (
            None,
            550,
            "550 Requested action not taken: mailbox unavailable: invalid recipient",
            "user_unknown",
            True,
            False,
        ),
        ("5.1.2", 550, "550 5.1.2 Host or domain name not found", "host_unknown", True, False),
        (
            "5.1.6",
            551,
            "551 5.1.6 User has moved; please try <new@example.org>",
            "moved",
            True,
            False,
        ),
        ("5.2.2", 552, "552 5.2.2 Mailbox full", "mailbox_full", False, False),
        ("5.0.0", 550, "550 User unknown: quota exceeded", "mailbox_full", False, False),
        ("4.1.1", 450, "450 4.1.1 user unknown: try again later", "user_unknown", True, False),
        (None, 450, "450 mailbox unknown (LDAP busy)", "user_unknown", False, False),
        (
            "5.7.1",
            554,
            "554 5.7.1 Client host [192.0.2.9] blocked using zen.spamhaus.org",
            "reputation",
            False,
            True,
        ),
        (
            "5.7.26",
            550,
            "550 5.7.26 Unauthenticated email from congstar.de is not accepted "
            "due to domain's DMARC policy",
            "auth",
            False,
            True,
        ),
        (
            "5.7.1",
            550,
            "550 5.7.1 Message rejected as spam by Content Filtering",
            "spam",
            False,
            True,
        ),
        ("5.7.1", 550, "550 5.7.1 Relaying denied", "relaying", False, False),
        ("4.4.7", None, "delivery time expired", "expired", False, False),
        (
            "5.1.1",
            550,
            "host mx.antispam.example.com said: 550 5.1.1 User unknown",
            "user_unknown",
            True,
            False,
        ),
        (
            "5.0.0",
            550,
            "550 Unknown user (in reply to end of DATA command)",
            "filtered",
            False,
            False,
        ),
        (
            "5.0.0",
            554,
            "554 delivery error: This user doesn't have an account (DATA)",
            "user_unknown",
            True,
            False,
        ),
        (None, 550, "550 Rejected", "policy", False, False),
        (
            "5.1.2",
            None,
            "Sorry, I couldn't find any host named example.invalid. (#5.1.2)",
            "host_unknown",
            True,
            False,
        ),
        (None, 550, "550 No MX or A records for example.invalid", "no_mail", True, False),
        (
            "5.2.2",
            None,
            "The users mailfolder is over the allowed quota (size). (#5.2.2)",
            "mailbox_full",
            False,
            False,
        ),
        (
            "5.1.10",
            550,
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient max@example.org "
            "not found by SMTP address lookup",
            "user_unknown",
            True,
            False,
        ),
        (
            "5.4.1",
            550,
            "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
            "user_unknown",
            True,
            False,
        ),
        (None, 550, "550 User <max@example.org> not found", "user_unknown", True, False),
        (
            "5.2.1",
            550,
            "550 5.2.1 The email account that you tried to reach is disabled.",
            "suspended",
            False,
            False,
        ),
        (None, 550, "550 see https://mail.example.com/help", "other", False, False),
    ],
)
def test_the_verdict_is_by_meaning(
    status: str | None, code: int | None, words: str, category: str, hard: bool, ours: bool
) -> None:
    from rollout.bounces.verdict import judge

    verdict = judge(status, code, words)
    assert (verdict.category, verdict.hard, verdict.sender_problem) == (category, hard, ours)
