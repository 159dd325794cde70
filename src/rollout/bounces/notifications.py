"""Bounce and complaint notifications sent as JSON rather than as DSNs: Amazon SES's, mailed
through SNS (the SNS envelope, or the bare notification).

`{"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients":
[{"emailAddress", "action", "status", "diagnosticCode"}]}, "mail": {...}}`; `Complaint` with
`complainedRecipients`; `Delivery` for delivered mail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One recipient of a notification."""

    kind: str  # bounce, complaint, delivery
    address: str
    action: str
    status: str
    diagnostic: str
    message_id: str | None
    permanent: bool


def entries(text: str) -> list[Entry] | None:
    """The recipients a JSON notification names, or None if the text is no such thing."""
    start = text.find("{")
    if start < 0 or ("notificationType" not in text and "eventType" not in text):
        return None
    # Sendmail breaks lines longer than 990 characters with "!" + newline + space: undo it.
    body = text[start:].replace("!\r\n ", "").replace("!\n ", "")
    try:
        data = json.JSONDecoder(strict=False).raw_decode(body)[0]
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("Message"), str):  # the SNS envelope
        try:
            data = json.loads(data["Message"])
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "").lower()
    mail = _dict(data.get("mail"))
    message_id = _message_id(mail)
    if kind == "bounce":
        bounce = _dict(data.get("bounce"))
        permanent = str(bounce.get("bounceType", "")).lower() == "permanent"
        return [
            Entry(
                "bounce",
                str(r.get("emailAddress", "")),
                str(r.get("action", "failed")),
                str(r.get("status", "")),
                str(r.get("diagnosticCode", "")),
                message_id,
                permanent,
            )
            for r in _list(bounce.get("bouncedRecipients"))
        ]
    if kind == "complaint":
        complaint = _dict(data.get("complaint"))
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        return [
            Entry("complaint", str(r.get("emailAddress", "")), "", "", feedback, message_id, False)
            for r in _list(complaint.get("complainedRecipients"))
        ]
    if kind == "delivery":
        delivery = _dict(data.get("delivery"))
        return [
            Entry("delivery", str(a), "delivered", "2.0.0", "", message_id, False)
            for a in delivery.get("recipients") or mail.get("destination") or []
        ]
    return None


def _message_id(mail: dict[str, Any]) -> str | None:
    common = _dict(mail.get("commonHeaders"))
    if common.get("messageId"):
        return str(common["messageId"])
    for h in _list(mail.get("headers")):
        if str(h.get("name", "")).lower() == "message-id":
            return str(h.get("value", ""))
    return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
