"""Walking a bounce's MIME tree: its parts, its readable text, and the original message inside.

Bounces are untrusted and often broken (missing boundaries, wrong charsets, bodies cut short),
so everything here tolerates what the stdlib's lenient `compat32` parser makes of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import errors, message_from_bytes, message_from_string
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32

STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
FEEDBACK_TYPES = ("message/feedback-report",)
ORIGINAL_TYPES = ("message/rfc822", "message/global", "message/partial")
HEADER_TYPES = ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers")

# Where a bounce's own words end and the copy of the original begins.
_ORIGINAL_MARKER = re.compile(
    r"^[\s>|_=*-]*("
    r"-{2,}.*(original|unsent|returned|rejected|undelivered|undeliverable)\b.*message"
    r"|.*\bmessage (text|body|headers?)\s+(follows?|below)"
    r"|.*copy of the (original )?message"
    r"|.*\bbelow this line\b.*copy"
    r"|.*\b(original|returned|undelivered|unsent)\s+message\s+(follows|headers|header)"
    r"|original message headers?:?"
    r"|content-type: message/rfc822"
    r"|-+ ?(original|forwarded) message ?-+"
    r"|.*\bheaders? of (the )?(original|returned|your) message\b"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
_MESSAGE_ID = re.compile(r"^\s*>?\s*Message-I[dD]\s*:\s*(?:\r?\n\s+)?(<[^<>\s]+>|\S+@\S+)", re.M)


def parse(data: bytes) -> Message:
    return message_from_bytes(data, policy=compat32)


def walk(msg: Message) -> Iterator[Message]:
    """Every part, depth first, including those inside attached messages."""
    yield msg
    payload = msg.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from walk(part)


def own_parts(msg: Message) -> Iterator[Message]:
    """The parts that belong to the bounce itself: not those inside an attached original."""
    yield msg
    if msg.get_content_type() in ORIGINAL_TYPES or msg.get_content_type() in STATUS_TYPES:
        return
    payload = msg.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from own_parts(part)


def report_root(msg: Message) -> Message:
    """The message a report belongs to: `msg`, or, when someone forwarded the bounce as an
    attachment, the attached bounce (its own original and Message-ID are the ones that count).
    """
    if any(p.get_content_type() in STATUS_TYPES for p in own_parts(msg)):
        return msg
    for part in walk(msg):
        inner = part.get_payload() if part.get_content_type() in ORIGINAL_TYPES else None
        if (
            isinstance(inner, list)
            and inner
            and isinstance(inner[0], Message)
            and any(p.get_content_type() in STATUS_TYPES for p in walk(inner[0]))
        ):
            return report_root(inner[0])
    return msg


def text_of(part: Message) -> str:
    """A leaf part's text, decoded from its transfer encoding and charset (as best it can)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    return _decode(payload, part.get_content_charset() or "utf-8")


def _decode(data: bytes, charset: str = "utf-8") -> str:
    for encoding in (charset, "utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def raw_text_of(part: Message) -> str:
    """A part as text even where the parser made sub-messages of it (delivery-status)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(
            raw_text_of(p) if p.is_multipart() else _block_text(p)
            for p in payload
            if isinstance(p, Message)
        )
    return text_of(part)


def _block_text(block: Message) -> str:
    """A DSN field block as it was sent. The stdlib parses each block as a message: a line
    that is no header (an unindented continuation) ends its headers and starts a "body";
    joining them again without the blank line keeps the block whole."""
    head = "\n".join(f"{name}: {value}" for name, value in block.items())
    text = _decode(head.encode("utf-8", "surrogateescape"))
    body = block.get_payload(decode=True)  # the bytes as sent (a str payload lost UTF-8)
    if isinstance(body, bytes) and body.strip():
        separated = not any(
            isinstance(d, errors.MissingHeaderBodySeparatorDefect) for d in block.defects
        )
        text += ("\n\n" if separated else "\n") + _decode(body)
    return text


def readable_text(msg: Message) -> str:
    """The bounce's own text parts (plain preferred over HTML), joined."""
    plain: list[str] = []
    html: list[str] = []
    for part in own_parts(msg):
        if part.is_multipart() or part.get_content_maintype() not in ("text", "multipart"):
            continue  # a multipart left unsplit (a broken boundary) is read as text
        if part.get_content_type() in HEADER_TYPES:
            continue
        (html if part.get_content_subtype() == "html" else plain).append(text_of(part))
    if plain:
        return "\n".join(plain)
    return "\n".join(_html_to_text(h) for h in html)


def _html_to_text(html: str) -> str:
    text = re.sub(r"(?is)<(script|style).*?</\1>", " ", html)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|li|h\d)>", "\n", text)
    text = re.sub(r"<[^>]+>", " ", text)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&nbsp;", " "), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def split_original(text: str) -> tuple[str, str]:
    """(the bounce's own words, the quoted original) at the first marker of the original."""
    found = _ORIGINAL_MARKER.search(text)
    return (text[: found.start()], text[found.start() :]) if found else (text, "")


def original_headers(msg: Message, quoted: str = "") -> Message | None:
    """The original message's headers: an attached message, text/rfc822-headers, or the
    quoted original in the text."""
    for part in walk(msg):
        if part is msg:
            continue
        ctype = part.get_content_type()
        if ctype in ORIGINAL_TYPES or ctype in HEADER_TYPES:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
            text = text_of(part)
            if text.strip():
                return message_from_string(text.lstrip(), policy=compat32)
    if quoted:
        body = quoted.split("\n", 1)[1] if "\n" in quoted else ""
        return message_from_string(body.lstrip("\r\n"), policy=compat32)
    return None


def original_message_id(msg: Message, quoted: str) -> str | None:
    """The Message-ID of the message that bounced, wherever the bounce carries it."""
    headers = original_headers(msg)
    if headers is not None and headers["Message-ID"]:
        return normalise_message_id(headers["Message-ID"])
    found = _MESSAGE_ID.search(quoted)
    return normalise_message_id(found.group(1)) if found else None


def normalise_message_id(value: object) -> str | None:
    """`<id>` as the state DB keeps it: brackets added if missing, folding and blanks removed."""
    text = "".join(str(value or "").split())
    found = re.search(r"<([^<>]+)>", text)
    inner = found.group(1) if found else text.strip("<>")
    return f"<{inner}>" if inner else None


def header(msg: Message, name: str) -> str:
    """A header's value as text (RFC 2047 words decoded), '' if absent or undecodable."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (LookupError, UnicodeDecodeError, ValueError, TypeError):
        return str(value)
