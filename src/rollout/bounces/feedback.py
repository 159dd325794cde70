"""Messages that are not bounces but land beside them: ARF complaints and auto-replies.

An ARF feedback report (RFC 5965) is a recipient pressing "this is spam": that customer is never
mailed again. An auto-reply (RFC 3834: out of office, vacation, "your ticket was received") is
counted and otherwise ignored.
"""

from __future__ import annotations

import re
from email.message import Message

from rollout.bounces.fields import field_name
from rollout.bounces.mime import FEEDBACK_TYPES, ORIGINAL_TYPES, header, raw_text_of, walk

_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesen|"
    r"vacation|urlaub|autoreply|auto:|re: *auto|i am (currently )?out|on holiday|"
    r"away from|absence|automatische antwort|réponse automatique|respuesta automática)",
    re.IGNORECASE,
)
_BOUNCE_SENDER = re.compile(r"mailer-?daemon|post_?master|mail delivery|mdaemon", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|failure|notification|has failed|problem|report)|"
    r"returned mail|mail delivery failed|failure notice|non.?delivery|could not be delivered|"
    r"unzustellbar|nicht zugestellt|failed|delayed|warning|rejected|bounce",
    re.IGNORECASE,
)
_COMPLAINT_SUBJECT = re.compile(
    r"\b(abuse|spam|complaint|feedback)[ -]report\b|\bcomplaint about\b", re.IGNORECASE
)
_FEEDBACK_FIELD = re.compile(r"^Feedback-Type\s*:", re.IGNORECASE | re.MULTILINE)
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]{1,40})\s*:\s*(.*)$", re.MULTILINE)


def feedback_fields(msg: Message) -> dict[str, list[str]] | None:
    """The fields of a complaint (lower-case names, every value), or None if it is none.

    An ARF report anywhere in the message or as text; or, from the systems that predate ARF,
    a message titled as a complaint that attaches the message complained about.
    """
    for part in walk(msg):
        ctype = part.get_content_type()
        is_report = ctype in FEEDBACK_TYPES
        if is_report or (part.get_content_maintype() == "text" and not part.is_multipart()):
            text = raw_text_of(part)
            if is_report or _FEEDBACK_FIELD.search(text):
                fields: dict[str, list[str]] = {}
                for m in _FIELD.finditer(text):
                    fields.setdefault(field_name(m.group(1)), []).append(m.group(2).strip())
                return fields
    if _COMPLAINT_SUBJECT.search(header(msg, "Subject")) and any(
        p.get_content_type() in ORIGINAL_TYPES for p in walk(msg)
    ):
        return {}
    return None


def looks_like_bounce(msg: Message) -> bool:
    """From a mail system, or says it is about a failed delivery."""
    return bool(
        _BOUNCE_SENDER.search(header(msg, "From"))
        or _BOUNCE_SUBJECT.search(header(msg, "Subject"))
        or msg.get("X-Failed-Recipients")
    )


def is_autoreply(msg: Message) -> bool:
    """An automatic answer by a person's mailbox, not by a mail system."""
    if looks_like_bounce(msg):
        return False
    auto = header(msg, "Auto-Submitted").lower()
    return bool(
        auto.startswith("auto-replied")
        or msg.get("X-Autoreply")
        or msg.get("X-Autorespond")
        or header(msg, "Precedence").lower() == "auto_reply"
        or _AUTO_SUBJECT.search(header(msg, "Subject"))
    )
