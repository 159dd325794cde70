"""One message in, its notices out: which kind of message it is, and what it says about whom."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from rollout.bounces import notifications, plaintext
from rollout.bounces.feedback import feedback_fields, is_autoreply, looks_like_bounce
from rollout.bounces.fields import Block, looks_like_dsn_text, recipient_blocks
from rollout.bounces.mime import (
    STATUS_TYPES,
    header,
    normalise_message_id,
    original_headers,
    original_message_id,
    parse,
    raw_text_of,
    readable_text,
    report_root,
    split_original,
    walk,
)
from rollout.bounces.model import Bounce, Kind, Notice, Unparsed
from rollout.bounces.reasons import basic_code, diagnostic, enhanced_status, reason
from rollout.bounces.verdict import judge


def read_message(source: str, data: bytes) -> Iterator[Notice]:
    """The per-recipient notices of one message, or one Unparsed saying why there are none."""
    try:
        notices = list(_notices(source, parse(data)))
    except Exception as error:  # untrusted mail: one bad message must not stop the batch
        notices = [Unparsed(source, f"cannot parse ({type(error).__name__})")]
    yield from notices


def _notices(source: str, whole: Message) -> Iterator[Notice]:
    msg = report_root(whole)
    own, quoted = split_original(readable_text(msg))
    context = _Context(source, msg, own, quoted)
    feedback = feedback_fields(msg)
    if feedback is not None:
        yield from context.complaints(feedback)
        return
    listed = notifications.entries(own)
    if listed is not None:
        yield from (context.from_entry(e) for e in listed)
        return
    blocks = _dsn_blocks(msg)
    if blocks:
        # Blocks whose recipient is unreadable take the text's addresses the others lack.
        named = {a.lower() for b in blocks for a in _addresses(*b.recipient_fields())}
        spare = (a for a in context.text_recipients() if a not in named)
        for block in blocks:
            yield context.from_block(block, spare)
        return
    if is_autoreply(msg):
        yield context.simple(Kind.AUTOREPLY, _sender(msg))
        return
    if not (looks_like_bounce(msg) or plaintext.looks_like_bounce_text(own)):
        yield Unparsed(source, "not a bounce")
        return
    found: list[Notice] = list(context.from_text())
    yield from found or [Unparsed(source, "bounce without a recipient")]


def _dsn_blocks(msg: Message) -> list[Block]:
    """Recipient blocks of every delivery-status part anywhere, else of DSN fields in text."""
    blocks: list[Block] = []
    for part in walk(msg):
        if part.get_content_type() in STATUS_TYPES:
            blocks += recipient_blocks(raw_text_of(part))
    if blocks:
        return blocks
    for part in walk(msg):
        if part.get_content_maintype() in ("text", "multipart") and not part.is_multipart():
            text = raw_text_of(part)
            if looks_like_dsn_text(text):
                blocks += recipient_blocks(text)
    return blocks


def _sender(msg: Message) -> str:
    found = getaddresses([header(msg, "From")])
    return found[0][1] if found else ""


class _Context:
    """What all notices of one message share: source, date, original Message-ID, texts."""

    def __init__(self, source: str, msg: Message, own: str, quoted: str) -> None:
        self.source, self.msg, self.own, self.quoted = source, msg, own, quoted
        self.message_id = original_message_id(msg, quoted)
        self.date = _date(msg)
        self.exclude = self._not_recipients()

    def _not_recipients(self) -> set[str]:
        names = [header(self.msg, n) for n in ("From", "To", "Return-Path", "Reply-To", "Sender")]
        original = original_headers(self.msg, self.quoted)
        if original is not None:
            names += [header(original, n) for n in ("From", "Return-Path", "Sender", "Reply-To")]
        return {a.lower() for _, a in getaddresses(names) if "@" in a}

    def simple(self, kind: Kind, address: str, why: str = "") -> Bounce:
        addresses = (address,) if address else ()
        return Bounce(self.source, kind, self.message_id, addresses, None, None, why, self.date)

    def complaints(self, fields: dict[str, list[str]]) -> Iterator[Bounce]:
        """One complaint per recipient the report names (else the original's To, if one)."""
        named = fields.get("original-rcpt-to") or fields.get("removal-recipient") or []
        addresses = [_bare(a) for a in named if _bare(a)]
        if not addresses:
            addresses = [self._original_recipient() or ""]
        why = f"complaint: {(fields.get('feedback-type') or ['abuse'])[0]}"
        for address in addresses:
            yield self.simple(Kind.COMPLAINT, address, why)

    def _original_recipient(self) -> str | None:
        original = original_headers(self.msg, self.quoted)
        if original is None:
            return None
        found = [a for _, a in getaddresses([header(original, "To")]) if "@" in a]
        return found[0] if len(found) == 1 else None

    def from_block(self, block: Block, spare: Iterator[str]) -> Notice:
        action = (block.get("action").split() or [""])[0].lower().strip(";:,.")
        status = enhanced_status(block.get("status")) or enhanced_status(
            block.get("diagnostic-code")
        )
        words = diagnostic(block.get("diagnostic-code"))
        addresses = _addresses(*block.recipient_fields())
        if not addresses:
            found = next(spare, None) or self._original_recipient()
            addresses = (found,) if found else ()
        about = plaintext.stretches(self.own, [addresses[-1].lower()]) if addresses else []
        prose = plaintext.summary_line(f"{about[0].before}\n{about[0].words}") if about else ""
        if not words:  # the reason is in the prose only (Exchange, Notes)
            words = prose
        code = basic_code(words)
        if action in ("delivered", "relayed", "expanded", "deliverable"):
            kind = Kind.DELIVERED
        elif action == "delayed" or (not action and (status or "").startswith("4")):
            kind = Kind.DELAYED
        elif action in ("failed", "expired", "failure", "") and (status or code or words):
            return self._failure(addresses, status, code, words, around=prose)
        else:
            return Unparsed(self.source, f"unknown Action {action!r}")
        why = reason(kind.value, status, code, words)
        return Bounce(self.source, kind, self.message_id, addresses, code, status, why, self.date)

    def _failure(
        self,
        addresses: tuple[str, ...],
        status: str | None,
        code: int | None,
        words: str,
        message_id: str | None = None,
        around: str = "",
    ) -> Bounce:
        verdict = judge(status, code, words, around)
        kind = Kind.HARD if verdict.hard else Kind.SOFT
        why = reason(verdict.category, status, code, words)
        return Bounce(
            self.source,
            kind,
            message_id or self.message_id,
            addresses,
            code,
            status,
            why,
            self.date,
            verdict.sender_problem,
        )

    def text_recipients(self) -> list[str]:
        """The failed addresses the prose names (those also in X-Failed-Recipients, if it is
        there); else X-Failed-Recipients; else the original's To, if it names one address."""
        in_text = plaintext.candidates(self.own, self.exclude)
        listed = [a.lower() for _, a in getaddresses(self.msg.get_all("X-Failed-Recipients", []))]
        both = [a for a in in_text if a in listed]
        addresses = both or in_text or [a for a in listed if "@" in a]
        if not addresses and (found := self._original_recipient()):
            addresses = [found.lower()]
        return addresses

    def from_entry(self, entry: notifications.Entry) -> Notice:
        """A recipient of a JSON notification (Amazon SES)."""
        message_id = normalise_message_id(entry.message_id) or self.message_id
        addresses = (entry.address,) if entry.address else ()
        if entry.kind == "complaint":
            why = f"complaint: {entry.diagnostic}"
            return Bounce(
                self.source, Kind.COMPLAINT, message_id, addresses, None, None, why, self.date
            )
        status, words = enhanced_status(entry.status), diagnostic(entry.diagnostic)
        code = basic_code(words)
        if entry.kind == "delivery":
            kind = Kind.DELIVERED
        elif entry.action == "delayed":
            kind = Kind.DELAYED
        else:
            return self._failure(addresses, status, code, words, message_id)
        why = reason(kind.value, status, code, words)
        return Bounce(self.source, kind, message_id, addresses, code, status, why, self.date)

    def from_text(self) -> Iterator[Bounce]:
        """Plain-text bounces: one notice per failed address the prose names."""
        addresses = self.text_recipients()
        delayed = plaintext.is_delay_warning(self.own)
        alias_of = plaintext.aliases(self.own, addresses)
        stretches = {s.address: s for s in plaintext.stretches(self.own, addresses)}
        for address in addresses:
            # Original-Recipient first, as in a DSN: the alias we sent to, then where it led.
            named = (alias_of[address], address) if address in alias_of else (address,)
            stretch = stretches.get(address)
            words = plaintext.summary_line(stretch.words if stretch else self.own)
            status, code = enhanced_status(words), basic_code(words)
            if stretch and stretch.before and judge(status, code, words).category == "other":
                words = plaintext.summary_line(f"{stretch.before}\n{stretch.words}")
                status, code = status or enhanced_status(words), code or basic_code(words)
            if delayed:
                why = reason("delayed", status, code, words)
                yield Bounce(
                    self.source, Kind.DELAYED, self.message_id, named, code, status, why, self.date
                )
            elif len(addresses) == 1 and judge(status, code, words).category == "other":
                # The reply stands apart from the address (Verizon, Notes): read all the words.
                everything = plaintext.summary_line(self.own)
                status = status or enhanced_status(everything)
                yield self._failure(named, status, code or basic_code(everything), everything)
            else:
                yield self._failure(named, status, code, words)


def _addresses(*values: str) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        if value:
            kind, sep, address = value.partition(";")  # "rfc822; max@example.org"
            bare = _bare(address if sep else kind)
            if plaintext.ADDRESS.fullmatch(bare) and bare.lower() not in (f.lower() for f in found):
                found.append(bare)
    return tuple(found)


def _bare(address: str) -> str:
    return address.strip().strip("<>").strip().strip("<>")


def _date(msg: Message) -> datetime | None:
    """When the bounce was written: its Date, else the newest Received stamp."""
    candidates = [header(msg, "Date")]
    candidates += [str(r).rpartition(";")[2] for r in msg.get_all("Received", [])[:1]]
    for value in candidates:
        try:
            when = parsedate_to_datetime(value.strip()) if value.strip() else None
        except (TypeError, ValueError, IndexError):
            continue
        if when is not None:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None
