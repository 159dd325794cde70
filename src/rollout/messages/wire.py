"""The wire form: headers that cannot be broken out of, MIME parts, RFC 5322 bytes."""

from __future__ import annotations

import binascii
import email.policy
import re
from base64 import b64encode
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage, MIMEPart

from rollout.addresses import check_address, clean_name
from rollout.model import Recipient

# email.policy.SMTP (CRLF line ends), declared 7-bit clean: bodies are quoted-printable, so no
# server needs 8BITMIME and no line is too long (forcing 8bit drew "500 Line too long").
# Headers are folded by us (see `address_header`), so the policy must not refold them.
POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")

# dot-atom@domain: what email-validator accepts by default (no quoted local parts, no literals).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# A name of atoms and single spaces goes into a header as it is; others are quoted or encoded.
_ATOMS = re.compile(rf"{_ATEXT}(?: {_ATEXT})*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+")
# The headers of every message, nothing else (validate checks the hostile sample against it).
HEADER_NAMES = frozenset(
    (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "mime-version",
        "content-type",
    )
)


@dataclass(frozen=True)
class Draft:
    """A message as it goes on the wire: folded header values, quoted-printable parts (CRLF)."""

    headers: tuple[tuple[str, str], ...]
    boundary: str
    parts: tuple[tuple[str, str], ...]

    def serialise(self) -> bytes:
        """What `email.generator.BytesGenerator` writes for this structure, without its cost."""
        out = [f"{name}: {value}\r\n" for name, value in self.headers]
        for content_type, body in self.parts:
            out.append(f"\r\n--{self.boundary}\r\nContent-Type: {content_type}\r\n")
            out.append(f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{body}")
        out.append(f"\r\n--{self.boundary}--\r\n")
        return "".join(out).encode("ascii")


def mime_part(content_type: str, body: str) -> MIMEPart:
    part = MIMEPart(policy=POLICY)
    part.set_raw("Content-Type", content_type)
    part.set_raw("Content-Transfer-Encoding", "quoted-printable")
    part.set_payload(body)
    return part


def quoted_printable(text: str) -> str:
    """UTF-8 as quoted-printable with CRLF line ends: 7-bit clean, lines <= 76, readable."""
    crlf = "\r\n".join(text.splitlines()) + "\r\n"
    return binascii.b2a_qp(crlf.encode(), istext=True).decode("ascii")


def to_bytes(msg: EmailMessage) -> bytes:
    """Any message as SMTP DATA with our policy (CRLF, 7-bit)."""
    return msg.as_bytes(policy=POLICY)


def header_text(name: str, text: str) -> str:
    """`text` as a header value: RFC 2047 encoded words where non-ASCII, folded at 78 columns."""
    charset = "us-ascii" if text.isascii() else "utf-8"
    return Header(text, charset, header_name=name).encode(linesep="\r\n")


# An encoded word carries at most 45 bytes of UTF-8: base64 makes 60 characters of them, and
# "=?utf-8?b?...?=" 72, within RFC 2047's 75 and, after "From: ", within 78 columns.
_WORD_BYTES = 45


def encoded_words(text: str) -> str:
    """`text` as RFC 2047 encoded words (base64 of UTF-8), each on a line of its own after the
    first (CRLF, space) and never splitting a character. What `header_text` writes, without
    `email.header`'s cost (about 70 µs a name): names differ from mail to mail."""
    words, chunk, size = [], "", 0
    for char in text:
        width = len(char.encode())
        if size + width > _WORD_BYTES:
            words.append(chunk)
            chunk, size = "", 0
        chunk, size = chunk + char, size + width
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{b64encode(w.encode()).decode('ascii')}?=" for w in words)


def to_header(recipient: Recipient) -> str:
    """The To value; raises ValueError for an address these messages cannot carry."""
    # The intake's own check, asserted again: IDN domains come back in punycode, and anything
    # a To header could not carry plainly (line breaks, several addresses) is refused.
    addr, problem = check_address(recipient.email)
    if problem is not None:
        raise ValueError(f"customer {recipient.customer_id}: {problem}")
    name = clean_name(f"{recipient.first_name} {recipient.last_name}")
    return address_header("To", name, addr)


def address_header(field: str, name: str, addr: str) -> str:
    """`name <addr>`, name RFC 2047 encoded if needed, folded so lines stay within 78 columns.

    Built by hand rather than by `email.headerregistry`: that costs ~0.9 ms for a name with
    umlauts, and its folding is where CVE-2024-6923 turned `=?...?=` names into extra headers.
    """
    if not _ADDR_SPEC.fullmatch(addr):
        raise ValueError(f"not a plain e-mail address: {addr!r}")
    if not name:
        return addr
    phrase = _phrase(name)
    last_line = phrase.rpartition("\n")[2] if "\n" in phrase else f"{field}: {phrase}"
    fold = " " if len(last_line) + len(addr) + 3 <= 78 else "\r\n "
    return f"{phrase}{fold}<{addr}>"


def _phrase(name: str) -> str:
    if _ATOMS.fullmatch(name):
        return name
    if name.isascii():  # printable: clean_name removed control characters
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return encoded_words(name)


def aware(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    return value
