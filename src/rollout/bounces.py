"""Bounces: read delivery status notifications and bounce lists, and record them in the state DB.

Input (`iter_bounces`): RFC 3464 DSNs (``multipart/report; report-type=delivery-status``, also
the RFC 6533 ``global`` variants) in a Maildir, an mbox or single files, and CSV bounce lists
(columns ``address,code[,reason]``, a header row, ``,`` or ``;``). Each per-recipient block of a
DSN and each list row is one notice. Anything else is reported as unparsed, never dropped.

What a notice says:

- hard: Action ``failed`` with Status 5.x.x (a list row: 5xx or 5.x.x). The address does not
  work: the delivery becomes 'bounced', permanent, so `rollout resend` skips it until the
  customer's address changes.
- soft: Action ``failed`` with any other Status (4.x.x: the remote MTA gave up for now; a list
  row: 4xx). The delivery becomes 'failed', not permanent, so `rollout resend` tries again.
- delayed: Action ``delayed``: still in some queue, no outcome yet. Counted, changes nothing.
- delivered: Action ``delivered``, ``relayed`` or ``expanded``: not a bounce. Counted, ignored.

Matching (`apply_bounces`): the original Message-ID first (it is derived from campaign and
customer, so it names one delivery), the recipient address second (case-insensitive; for DSNs
without the original headers, for lists, and for relays that rewrite the Message-ID). Exactly
one delivery (within `brands`, if given) is applied; none is unmatched; more are ambiguous and
left alone, since we cannot tell whose it is.

A matched notice changes nothing, and is counted as such, when:

- already: the record already says as much: 'bounced', or 'failed' for good (a 5xx during the
  SMTP dialogue), or 'failed' for retry and the notice is soft. So re-reading the same files
  changes nothing, a soft notice never downgrades a hard one, and a hard one upgrades a soft one.
- stale: the notice is about an earlier attempt: it names another recipient than the delivery
  now has (a re-send after an address change keeps the Message-ID), or it is dated before the
  latest send of a delivery that is 'sent' or 'sending' (allowing `CLOCK_SKEW`). Without this,
  re-reading an old soft bounce after a successful re-send would queue the customer again, and
  they would get the e-mail twice. A DSN is dated by its Date header; a list by its file's
  modification time (it cannot be older than the bounces it lists).

The matching needs no lock: each change is one short transaction of its own, and a send in
flight ('sending') is newer than any notice about an earlier attempt.
"""

from __future__ import annotations

import csv
import io
import mailbox
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path

from rollout.state import Delivery, StateStore

CLOCK_SKEW = timedelta(minutes=2)  # the reporting MTA's clock may differ from ours a little
EXAMPLES = 5  # file names kept per kind of problem in the report
REASON_LIMIT = 300  # characters of the server's words kept in the state DB

_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_MESSAGE_TYPES = ("message/rfc822", "message/global", "message/global-headers")
_LEADING_CODE = re.compile(r"([245]\d\d)(?:[\s-]|$)")  # "550 5.1.1 ..." or "550-5.1.1 ..."
_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_ANGLED = re.compile(r"<([^<>]+)>")


class Kind(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    DELAYED = "delayed"
    DELIVERED = "delivered"  # also relayed or expanded: not a bounce


@dataclass(frozen=True)
class Bounce:
    """One recipient's fate as a DSN block or a list row reports it."""

    source: str  # file, file#n (mbox), maildir#key or file:line (list)
    kind: Kind
    message_id: str | None  # normalised to <id>, from the original headers
    addresses: tuple[str, ...]  # Original-Recipient first, then Final-Recipient
    code: int | None  # basic SMTP code (550) from Diagnostic-Code or the list
    status: str | None  # enhanced status code (5.1.1)
    reason: str  # what the state DB keeps: status and the server's words
    date: datetime | None  # when the notice was written, if known

    @property
    def hard(self) -> bool:
        return self.kind is Kind.HARD


@dataclass(frozen=True)
class Unparsed:
    source: str
    why: str


Notice = Bounce | Unparsed


class Outcome(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    ALREADY = "already"
    STALE = "stale"
    DELAYED = "delayed"
    IGNORED = "ignored"
    UNMATCHED = "unmatched"
    AMBIGUOUS = "ambiguous"
    UNPARSED = "unparsed"


_LABELS = {
    Outcome.HARD: "marked bounced (hard, not re-sent to this address)",
    Outcome.SOFT: "marked failed (soft, `rollout resend` tries again)",
    Outcome.ALREADY: "already recorded, nothing changed",
    Outcome.STALE: "stale (an earlier send or address), nothing changed",
    Outcome.DELAYED: "delayed (still queued), nothing changed",
    Outcome.IGNORED: "not bounces (delivered, relayed, expanded)",
    Outcome.UNMATCHED: "unmatched (no such Message-ID or address)",
    Outcome.AMBIGUOUS: "ambiguous (several deliveries), not applied",
    Outcome.UNPARSED: "unparsed (not a DSN, or a bad list row)",
}
_WITH_EXAMPLES = {Outcome.STALE, Outcome.UNMATCHED, Outcome.AMBIGUOUS, Outcome.UNPARSED}


@dataclass
class BounceReport:
    """How many notices ended how; a few sources (no addresses) for those that need a look."""

    hard: int = 0
    soft: int = 0
    already: int = 0
    stale: int = 0
    delayed: int = 0
    ignored: int = 0
    unmatched: int = 0
    ambiguous: int = 0
    unparsed: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, outcome: Outcome, example: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome in _WITH_EXAMPLES:
            kept = self.examples.setdefault(outcome, [])
            if len(kept) < EXAMPLES:
                kept.append(example)

    @property
    def total(self) -> int:
        return sum(getattr(self, o) for o in Outcome)

    def lines(self) -> list[str]:
        out = [f"bounces: {self.total} notices read"]
        for outcome, label in _LABELS.items():
            count = getattr(self, outcome)
            out.append(f"  {label}: {count}")
            shown = self.examples.get(outcome, [])
            out += [f"      {example}" for example in shown]
            if count > len(shown) > 0:
                out.append(f"      … and {count - len(shown)} more")
        return out


# --- reading ------------------------------------------------------------------------------


def iter_bounces(paths: Iterable[Path]) -> Iterator[Notice]:
    """Every notice in Maildirs, mbox files, single messages, CSV lists and folders of them."""
    for path in paths:
        yield from _read_path(path)


def _read_path(path: Path) -> Iterator[Notice]:
    if path.is_dir():
        if all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            yield from _read_maildir(path)
        else:
            for child in sorted(path.iterdir()):
                if not child.name.startswith("."):  # .DS_Store, Maildir++ folders, editor files
                    yield from _read_path(child)
    elif not path.is_file():
        yield Unparsed(str(path), "no such file or directory")
    elif path.suffix.lower() == ".csv":
        yield from _read_list(path)
    elif _is_mbox(path):
        yield from _read_mbox(path)
    else:
        yield from read_message(str(path), path.read_bytes())


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(5) == b"From "


def _read_maildir(path: Path) -> Iterator[Notice]:
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.iterkeys()):
        try:
            data = box.get_bytes(key)
        except KeyError:  # moved away meanwhile by a mail client
            continue
        yield from read_message(f"{path}#{key}", data)


def _read_mbox(path: Path) -> Iterator[Notice]:
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield from read_message(f"{path}#{number}", box.get_bytes(key))
    finally:
        box.close()


def read_message(source: str, data: bytes) -> Iterator[Notice]:
    """The per-recipient notices of one DSN, or one Unparsed."""
    try:
        notices = list(_dsn_notices(source, BytesParser(policy=policy.default).parsebytes(data)))
    except Exception as error:
        # Untrusted mail: the stdlib's header parser has raised IndexError and AttributeError on
        # malformed headers, and one bad message must not stop the batch.
        notices = [Unparsed(source, f"cannot parse ({type(error).__name__})")]
    yield from notices


def _dsn_notices(source: str, msg: Message) -> Iterator[Notice]:
    report = _status_part(msg)
    if report is None:
        yield Unparsed(source, "not a delivery status notification")
        return
    blocks = [b for b in _field_blocks(report) if b["Action"] or b["Final-Recipient"]]
    if not blocks:
        yield Unparsed(source, "no per-recipient fields")
        return
    message_id, date = _original_message_id(msg), _date(msg["Date"])
    for block in blocks:
        yield _dsn_notice(source, block, message_id, date)


def _status_part(msg: Message) -> Message | None:
    if msg.get_content_type() != "multipart/report":
        return None
    return next((p for p in _parts(msg) if p.get_content_type() in _STATUS_TYPES), None)


def _parts(msg: Message) -> list[Message]:
    """Sub-messages: a multipart's parts, a message/*'s message, a DSN's field blocks."""
    payload = msg.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _field_blocks(part: Message) -> list[Message]:
    """The DSN's header blocks: the per-message one first, then one per recipient.

    The stdlib splits message/delivery-status into one Message per block; the global variant
    it parses as one message whose body holds the remaining blocks.
    """
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _parse_blocks(str(payload))
    blocks: list[Message] = []
    for block in _parts(part):
        blocks.append(block)
        # decode=True gives the bytes as sent (plain get_payload() turns UTF-8 into U+FFFD).
        rest = block.get_payload(decode=True)
        if isinstance(rest, bytes) and rest.strip():
            blocks += _parse_blocks(rest.decode("utf-8", "replace"))  # global: UTF-8 (RFC 6533)
    return blocks


def _parse_blocks(text: str) -> list[Message]:
    parser = HeaderParser(policy=policy.default)
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text)
    return [parser.parsestr(c.strip("\r\n")) for c in chunks if c.strip()]


def _original_message_id(msg: Message) -> str | None:
    for part in _parts(msg):
        ctype = part.get_content_type()
        if ctype in _ORIGINAL_MESSAGE_TYPES:
            originals = _parts(part)
        elif ctype == "text/rfc822-headers" and isinstance(part, EmailMessage):
            originals = [HeaderParser(policy=policy.default).parsestr(part.get_content())]
        else:
            continue
        return normalise_message_id(originals[0]["Message-ID"]) if originals else None
    return None


def _dsn_notice(
    source: str, block: Message, message_id: str | None, date: datetime | None
) -> Notice:
    words = str(block["Action"] or "").split()
    action = words[0].lower() if words else ""
    status = _enhanced_status(block["Status"])
    diagnostic = _diagnostic(block["Diagnostic-Code"])
    code = _basic_code(diagnostic)
    kind = _dsn_kind(action, status or (str(code) if code else ""))
    if kind is None:
        return Unparsed(source, f"unknown Action {action!r}")
    addresses = _addresses(block["Original-Recipient"], block["Final-Recipient"])
    reason = _reason(status or "", diagnostic)
    return Bounce(source, kind, message_id, addresses, code, status, reason, date)


def _dsn_kind(action: str, status: str) -> Kind | None:
    if action == "failed":
        # Only a 5 is known to be final; anything else gets another try rather than lose someone.
        return Kind.HARD if status.startswith("5") else Kind.SOFT
    if action == "delayed":
        return Kind.DELAYED
    if action in ("delivered", "relayed", "expanded"):
        return Kind.DELIVERED
    return None


# --- lists --------------------------------------------------------------------------------


def _read_list(path: Path) -> Iterator[Notice]:
    """Rows of `address,code[,reason]` (`;` works too); code 550, 5.1.1 or `550 5.1.1`.

    A list carries no dates: its file's modification time stands for when it was written.
    """
    text = _decode(path.read_bytes())
    header_line = text.partition("\n")[0]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(rows, [])]
    if "address" not in header or "code" not in header:
        yield Unparsed(f"{path}:1", f"header must name address and code, not {header}")
        return
    date = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    for row in rows:
        if any(cell.strip() for cell in row):
            cells = dict(zip(header, (cell.strip() for cell in row), strict=False))
            yield _list_notice(f"{path}:{rows.line_num}", cells, date)


def _list_notice(source: str, cells: dict[str, str], date: datetime) -> Notice:
    address, words = cells.get("address", ""), cells.get("reason", "")
    given = cells.get("code") or words  # some exports put the whole reply in one column
    code, status = _basic_code(given), _enhanced_status(given)
    klass = (status or str(code or ""))[:1]
    kind = {"5": Kind.HARD, "4": Kind.SOFT, "2": Kind.DELIVERED}.get(klass)
    if not address:
        return Unparsed(source, "no address")
    if kind is None:
        return Unparsed(source, f"code {given!r} is neither 4xx/4.x.x nor 5xx/5.x.x")
    reason = _reason(status or str(code or ""), words)
    return Bounce(source, kind, None, (_bare(address),), code, status, reason, date)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:  # lists saved by spreadsheet programs on Windows
        return data.decode("cp1252", errors="replace")


# --- fields -------------------------------------------------------------------------------


def normalise_message_id(value: object) -> str | None:
    """`<id>` as the state DB keeps it: brackets added if missing, folding and blanks removed."""
    text = "".join(str(value or "").split())
    found = _ANGLED.search(text)
    inner = found.group(1) if found else text.strip("<>")
    return f"<{inner}>" if inner else None


def _addresses(*fields: object) -> tuple[str, ...]:
    found: list[str] = []
    for value in fields:
        if value:
            kind, sep, address = str(value).partition(";")  # "rfc822; max@example.org"
            bare = _bare(address if sep else kind)
            if bare and bare.lower() not in (f.lower() for f in found):
                found.append(bare)
    return tuple(found)


def _bare(address: str) -> str:
    return address.strip().strip("<>").strip()


def _enhanced_status(value: object) -> str | None:
    found = _ENHANCED.search(str(value or ""))
    return found.group(1) if found else None


def _diagnostic(value: object) -> str:
    """The server's words: unfolded, without the `smtp;` type."""
    text = " ".join(str(value or "").split())
    kind, sep, rest = text.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else text


def _basic_code(text: str) -> int | None:
    found = _LEADING_CODE.match(text.strip())
    return int(found.group(1)) if found else None


def _reason(label: str, words: str) -> str:
    head = f"bounce {label}".rstrip()
    return (f"{head}: {words}" if words else head)[:REASON_LIMIT]


def _date(value: object) -> datetime | None:
    try:
        when = parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --- applying -----------------------------------------------------------------------------


def apply_bounces(
    store: StateStore, notices: Iterable[Notice], brands: Collection[str] | None = None
) -> BounceReport:
    """Record each notice in the state DB as the module docstring says; count what happened."""
    report = BounceReport()
    for notice in notices:
        outcome, detail = _apply(store, notice, brands)
        report.add(outcome, f"{notice.source} ({detail})" if detail else notice.source)
    return report


def _apply(
    store: StateStore, notice: Notice, brands: Collection[str] | None
) -> tuple[Outcome, str]:
    if isinstance(notice, Unparsed):
        return Outcome.UNPARSED, notice.why
    if notice.kind is Kind.DELAYED:
        return Outcome.DELAYED, ""
    if notice.kind is Kind.DELIVERED:
        return Outcome.IGNORED, ""
    found = _match(store, notice, brands)
    if not found:
        return Outcome.UNMATCHED, ""
    if len(found) > 1:
        whose = ", ".join(sorted(f"{brand} {d.customer_id}" for brand, _, d in found))
        return Outcome.AMBIGUOUS, whose
    brand, campaign, delivery = found[0]
    stale = _stale(notice, delivery)
    if stale:
        return Outcome.STALE, f"{brand} {delivery.customer_id}: {stale}"
    if not _would_change(notice, delivery):
        return Outcome.ALREADY, ""
    store.mark_bounced(
        brand, campaign, delivery.customer_id, notice.hard, notice.code, notice.reason
    )
    return (Outcome.HARD if notice.hard else Outcome.SOFT), ""


def _match(
    store: StateStore, notice: Bounce, brands: Collection[str] | None
) -> list[tuple[str, str, Delivery]]:
    """The Message-ID's deliveries; failing that, the first address that has any."""
    if notice.message_id:
        found = _within(store.deliveries_matching(message_id=notice.message_id), brands)
        if found:
            return found
    for address in notice.addresses:
        found = _within(store.deliveries_matching(address=address), brands)
        if found:
            return found
    return []


def _within(
    found: list[tuple[str, str, Delivery]], brands: Collection[str] | None
) -> list[tuple[str, str, Delivery]]:
    return found if brands is None else [f for f in found if f[0] in brands]


def _stale(notice: Bounce, delivery: Delivery) -> str:
    """Why the notice is about an earlier attempt than the delivery's latest, or ''."""
    if notice.addresses and delivery.address.lower() not in (a.lower() for a in notice.addresses):
        return "the delivery has gone to another address since"
    if notice.date is None or delivery.status not in ("sent", "sending"):
        return ""
    sent = datetime.fromisoformat(delivery.updated_at)
    if notice.date < sent - CLOCK_SKEW:
        return f"dated {notice.date.astimezone(UTC):%Y-%m-%d %H:%M} UTC, before the latest send"
    return ""


def _would_change(notice: Bounce, delivery: Delivery) -> bool:
    if delivery.status == "bounced" or (delivery.status == "failed" and delivery.permanent):
        return False  # final already; a soft notice must not undo it
    return notice.hard or delivery.status != "failed"
