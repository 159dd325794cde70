"""Delivery status notifications (RFC 3464) in the shapes real MTAs send, built with `email`.

The layout follows Postfix's bounce(8) output: a multipart/report with a human-readable part, a
message/delivery-status part (a per-message block, then one block per recipient) and the
original's headers as text/rfc822-headers (Postfix's default) or the whole original as
message/rfc822 (Exim, Exchange, and Postfix with `bounce_size_limit` room).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from pathlib import Path
from typing import Literal

SENDER = "noreply@congstar.de"
MTA = "mail.congstar.de"
BOUNCED_AT = datetime(2022, 5, 10, 9, 0, tzinfo=UTC)  # the tests' sends happen at 08:00

Original = Literal["headers", "message", "none"]


def original_message(recipient: str, message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"congstar <{SENDER}>"
    msg["To"] = recipient
    msg["Subject"] = "Deine Legitimations-PIN"
    msg["Date"] = "Tue, 10 May 2022 10:00:00 +0200"
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("Hallo Max,\n\nab dem 16.05.2022 brauchst du deine Legi-PIN.\n")
    return msg


def dsn(
    recipient: str | None,
    message_id: str | None,
    *,
    action: str,
    status: str,
    diagnostic: str | None,
    original: Original = "headers",
    date: datetime = BOUNCED_AT,
) -> Message:
    """A Postfix-style DSN for one recipient; `recipient=None` leaves out the recipient fields."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"MAILER-DAEMON@{MTA} (Mail Delivery System)"
    report["To"] = SENDER
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = format_datetime(date)
    report["Message-Id"] = f"<20220510090000.3F1A2B@{MTA}>"
    report["Auto-Submitted"] = "auto-replied"
    report.attach(_notification(recipient, diagnostic))
    report.attach(_status(recipient, action, status, diagnostic))
    if original != "none":
        report.attach(_original(original, recipient or "max@example.org", message_id))
    return report


def _notification(recipient: str | None, diagnostic: str | None) -> MIMEText:
    text = (
        f"This is the mail system at host {MTA}.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients. It's attached below.\n\n"
        f"<{recipient}>: {diagnostic or 'see below'}\n"
    )
    part = MIMEText(text, "plain", "us-ascii")
    part["Content-Description"] = "Notification"
    return part


def _status(recipient: str | None, action: str, status: str, diagnostic: str | None) -> MIMEBase:
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {MTA}"
    per_message["X-Postfix-Queue-ID"] = "3F1A2B"
    per_message["X-Postfix-Sender"] = f"rfc822; {SENDER}"
    per_message["Arrival-Date"] = "Tue, 10 May 2022 10:00:00 +0200 (CEST)"
    per_recipient = Message()
    if recipient is not None:
        per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
        per_recipient["Original-Recipient"] = f"rfc822;{recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Remote-MTA"] = "dns; mx.example.org"
    if diagnostic:
        per_recipient["Diagnostic-Code"] = f"smtp; {diagnostic}"
    part = MIMEBase("message", "delivery-status")
    part.set_payload([per_message, per_recipient])  # the generator writes one block each
    part["Content-Description"] = "Delivery report"
    return part


def _original(kind: Original, recipient: str, message_id: str | None) -> Message:
    original = original_message(recipient, message_id or "")
    if message_id is None:
        del original["Message-ID"]
    if kind == "message":
        part: Message = MIMEMessage(original)
        part["Content-Description"] = "Undelivered Message"
    else:
        headers = "".join(f"{k}: {v}\n" for k, v in original.items())
        part = MIMEText(headers, "rfc822-headers", "us-ascii")
        part["Content-Description"] = "Undelivered Message Headers"
    return part


# --- the kinds the tests need ---------------------------------------------------------------


def hard_bounce(
    recipient: str | None,
    message_id: str | None,
    original: Original = "headers",
    date: datetime = BOUNCED_AT,
) -> Message:
    """5.1.1 User unknown, as Postfix reports a remote 550 (a long, folded Diagnostic-Code)."""
    # Postfix folds the server's reply onto continuation lines like this.
    words = (
        f"550 5.1.1 <{recipient or 'max@example.org'}>: Recipient address rejected:\n"
        "    User unknown in virtual mailbox table"
    )
    return dsn(
        recipient,
        message_id,
        action="failed",
        status="5.1.1",
        diagnostic=words,
        original=original,
        date=date,
    )


def soft_bounce(recipient: str, message_id: str | None, date: datetime = BOUNCED_AT) -> Message:
    """4.2.2 mailbox full, after the queue lifetime ran out: Action failed."""
    words = f"452 4.2.2 <{recipient}>: Mailbox full"
    return dsn(recipient, message_id, action="failed", status="4.2.2", diagnostic=words, date=date)


def delayed_notice(recipient: str, message_id: str | None) -> Message:
    """Postfix's 'delayed mail' warning: still queued, will keep trying."""
    return dsn(recipient, message_id, action="delayed", status="4.4.1", diagnostic=None)


def hard_bounce_with_original(recipient: str, message_id: str) -> Message:
    """The whole original message attached as message/rfc822 instead of its headers."""
    return hard_bounce(recipient, message_id, original="message")


def hard_bounce_without_original(recipient: str) -> Message:
    """No original headers at all: only the recipient address can match."""
    return hard_bounce(recipient, None, original="none")


def not_a_dsn() -> EmailMessage:
    """An out-of-office reply: lands in the bounce folder, is no bounce."""
    msg = EmailMessage()
    msg["From"] = "max@example.org"
    msg["To"] = SENDER
    msg["Subject"] = "Abwesenheitsnotiz: Deine Legitimations-PIN"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("Ich bin bis zum 20. Mai nicht im Büro.\n")
    return msg


def write_eml(folder: Path, name: str, msg: Message) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(msg.as_bytes())
    return path


def blocked_bounce(recipient: str, message_id: str | None, date: datetime = BOUNCED_AT) -> Message:
    """Our sending IP on a blocklist: the address is fine, our side must act."""
    words = (
        f"554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using "
        f"zen.spamhaus.org; <{recipient}>"
    )
    return dsn(recipient, message_id, action="failed", status="5.7.1", diagnostic=words, date=date)


def complaint(recipient: str, message_id: str, date: datetime = BOUNCED_AT) -> Message:
    """An ARF feedback report (RFC 5965): the recipient pressed "this is spam"."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "feedback-loop@fbl.example.org"
    report["To"] = f"abuse@{MTA}"
    report["Subject"] = "FW: Deine Legitimations-PIN"
    report["Date"] = format_datetime(date)
    report.attach(MIMEText("This is an email abuse report for an email message.\n", "plain"))
    fields = MIMEBase("message", "feedback-report")
    fields.set_payload(
        "Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n"
        f"Original-Mail-From: <{SENDER}>\nOriginal-Rcpt-To: <{recipient}>\n"
        "Source-IP: 192.0.2.25\n"
    )
    report.attach(fields)
    report.attach(MIMEMessage(original_message(recipient, message_id)))
    return report
