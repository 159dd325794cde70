"""Render one customer's Legi-PIN e-mail and build it as an RFC 5322 message.

Templates live in `templates/<brand>/` (`subject.txt.j2`, `body.txt.j2`, `body.html.j2`) and
extend the shared layouts in `templates/_base/`. A file a brand lacks falls back to the `_base`
default, so a folder with only `brand.toml` is already a working brand.

Thread safety: after `__init__` a `Composer` only reads its compiled templates and css-inline
object; its one mutable member, a small subject cache, is a dict whose get/set are atomic. One
instance may serve several threads.

Speed: `compose_bytes` writes the wire form itself (~0.2 ms per message, rendering included);
`compose` returns the same message as an `EmailMessage` and `to_bytes` of it is byte-identical
but takes ~0.75 ms, because the email package re-parses every header while serialising.
"""

from __future__ import annotations

import binascii
import email.policy
import hashlib
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.header import Header
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from pathlib import Path

import css_inline
import email_validator
import jinja2

from rollout.addresses import clean_name, one_line
from rollout.brands import Brand, templates_root
from rollout.model import PinSource, Recipient

# email.policy.SMTP (CRLF line ends), declared 7-bit clean: bodies are quoted-printable, so no
# server needs 8BITMIME and no line is too long (forcing 8bit drew "500 Line too long").
# Headers are folded by us (see `address_header`), so the policy must not refold them.
POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")

BASE = "_base"
SUBJECT, TEXT, HTML = "subject.txt.j2", "body.txt.j2", "body.html.j2"
# What a brand gets for a file it does not have.
FALLBACKS = {
    SUBJECT: f"{BASE}/subject.txt.j2",
    TEXT: f"{BASE}/layout.txt.j2",
    HTML: f"{BASE}/layout.html.j2",
}

_MONTHS = (
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)
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


class TemplateProblem(Exception):
    """A brand's template does not compile or render; the message names brand and file."""


@dataclass(frozen=True)
class Rendered:
    """The three texts of one e-mail, before they become a MIME message."""

    subject: str
    text: str
    html: str


def german_date(value: date) -> str:
    """`16. Mai 2022`, independent of the machine's locale."""
    return f"{value.day}. {_MONTHS[value.month - 1]} {value.year}"


def join_de(items: Iterable[str]) -> str:
    """`a`, `a und b`, `a, b und c`."""
    words = list(items)
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} und {words[-1]}"


def sample_recipient(pin_source: PinSource = PinSource.GENERATED) -> Recipient:
    """A customer whose name tries HTML and header injection; used by `validate` and tests."""
    return Recipient(
        customer_id="1000012345",
        first_name="<script>alert(1)</script>",
        last_name="=?utf-8?q?Muster=0ABcc:evil@example.com?=",
        email="max.mustermann@example.com",
        pin_source=pin_source,
    )


def make_environment(root: Path, slug: str) -> jinja2.Environment:
    """Names resolve in the brand's folder first; `_base/...` names only in `root/_base`."""
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(root / slug),
            jinja2.PrefixLoader({BASE: jinja2.FileSystemLoader(root / BASE)}),
        ]
    )
    env = jinja2.Environment(
        loader=loader,
        # Named explicitly: select_autoescape() defaults would leave "*.html.j2" unescaped.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["de_date"] = german_date
    env.filters["join_de"] = join_de
    return env


# Placeholders for a customer's values in a pre-inlined HTML skeleton: plain lowercase
# letters, which no HTML serialiser escapes or re-cases.
_NAME_SLOT = "rolloutslotfirstnamezq"
_ID_SLOT = "rolloutslotcustomeridzq"


def _as_html_text(value: str) -> str:
    """Escape text content exactly as css-inline's HTML serialiser writes it back."""
    escaped = value.replace("&", "&amp;").replace("\xa0", "&nbsp;")
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


def _plain_sample(source: PinSource) -> Recipient:
    return Recipient("K-1000", "", "Muster", "kunde@example.com", source)


class Composer:
    """Builds the Legi-PIN e-mails of one brand and campaign; templates are compiled once."""

    def __init__(self, brand: Brand, campaign: str, root: Path | None = None) -> None:
        self.brand = brand
        self.campaign = campaign
        self.root = root or templates_root()
        self._env = make_environment(self.root, brand.slug)
        self._subject = self._load(SUBJECT)
        self._text = self._load(TEXT)
        self._html = self._load(HTML)
        # Never fetch a stylesheet from the network while building a customer's mail.
        self._inliner = css_inline.CSSInliner(load_remote_stylesheets=False)
        self._from = address_header("From", clean_name(brand.sender_name), brand.sender_address)
        self._subjects: dict[str, str] = {}
        # Inlined HTML per (variant, has a name) with placeholders for the customer's values;
        # trusted only after validate() has shown it equals rendering each mail in full.
        self._skeletons: dict[tuple[str, bool], str] = {}
        self._skeletons_checked = False

    # -- templates -------------------------------------------------------------------------

    def _load(self, name: str) -> jinja2.Template:
        try:
            return self._env.select_template([name, FALLBACKS[name]])
        except jinja2.TemplateError as err:
            raise self._template_problem(err) from None

    def _problem(self, err: Exception, filename: str | None, lineno: int | None) -> TemplateProblem:
        where = self._relative(filename) if filename else f"{self.brand.slug}/?"
        at = f"{where}:{lineno}" if lineno else where
        return TemplateProblem(f"brand {self.brand.slug}: {at}: {one_line(str(err))}")

    def _relative(self, filename: str) -> str:
        path = Path(filename)
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else filename

    def _template_problem(self, err: Exception) -> TemplateProblem:
        """Name the failing file: a syntax error knows it; otherwise the innermost template frame
        (with `extends`, that may be the layout rather than the brand's file)."""
        if isinstance(err, jinja2.TemplateSyntaxError) and err.filename:
            return self._problem(err, err.filename, err.lineno)
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.endswith(".j2")]
        if frames:
            return self._problem(err, frames[-1].filename, frames[-1].lineno)
        return self._problem(err, None, None)

    def render(self, recipient: Recipient) -> Rendered:
        """Subject, plain text and HTML (CSS already inlined) for one customer."""
        context = self._context(recipient)
        subject = one_line(self._render(self._subject, context))
        text = self._render(self._text, context)
        if self._skeletons_checked:
            html = self._from_skeleton(recipient)
        else:
            html = self._inline_in_full(context)
        return Rendered(subject=subject, text=text, html=html)

    def _context(self, recipient: Recipient) -> dict[str, object]:
        return {
            "brand": self.brand,
            "first_name": one_line(recipient.first_name),
            "customer_id": recipient.customer_id,
            "variant": PinSource(recipient.pin_source).value,
        }

    def _render(self, template: jinja2.Template, context: dict[str, object]) -> str:
        try:
            return template.render(context)
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as err:
            raise self._template_problem(err) from None

    def _inline_in_full(self, context: dict[str, object]) -> str:
        # Inline the rendered HTML, never the template source: css-inline would mangle Jinja.
        return self._inliner.inline(self._render(self._html, context))

    def _from_skeleton(self, recipient: Recipient) -> str:
        """CSS inlining is a fifth of a mail's cost, and its result depends only on the variant
        and whether there is a name: inline once, then put each customer's escaped values in."""
        name = one_line(recipient.first_name)
        key = (PinSource(recipient.pin_source).value, bool(name))
        skeleton = self._skeletons.get(key)
        if skeleton is None:
            stand_in = {"first_name": _NAME_SLOT if name else "", "customer_id": _ID_SLOT}
            skeleton = self._inline_in_full({**self._context(recipient), **stand_in})
            self._skeletons[key] = skeleton
        filled = skeleton.replace(_NAME_SLOT, _as_html_text(name))
        return filled.replace(_ID_SLOT, _as_html_text(recipient.customer_id))

    def validate(self) -> None:
        """Render both variants for a hostile sample customer; raise TemplateProblem if unfit.

        Also decides whether mails may be built from pre-inlined skeletons: only if, for the
        samples, that gives the same HTML as rendering and inlining each mail in full (a
        template that transforms or tests a name's value would not).
        """
        same = True  # byte for byte, or a '|safe' in a template could hide behind our escaping
        for source in PinSource:
            for recipient in (sample_recipient(source), _plain_sample(source)):
                full = self._inline_in_full(self._context(recipient))
                same &= self._from_skeleton(recipient) == full
        self._skeletons_checked = same
        for source in PinSource:
            recipient = sample_recipient(source)
            self._check(self.render(recipient), recipient)
            self._check_wire(self.compose_bytes(recipient))

    def _check(self, rendered: Rendered, recipient: Recipient) -> None:
        problems = []
        if not rendered.subject:
            problems.append(f"{SUBJECT}: empty subject")
        if "<script" in rendered.html.lower():
            problems.append(f"{HTML}: a name reached the HTML unescaped (is there a '|safe'?)")
        for name, body in ((TEXT, rendered.text), (HTML, rendered.html)):
            if recipient.customer_id not in body:
                problems.append(f"{name}: the customer number is missing")
            if german_date(self.brand.mandatory_date) not in body:
                problems.append(f"{name}: the mandatory date is missing")
        if problems:
            raise TemplateProblem(f"brand {self.brand.slug}: {'; '.join(problems)}")

    def _check_wire(self, data: bytes) -> None:
        """The hostile sample must parse back with exactly our headers (no injected Bcc)."""
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        names = {name.lower() for name in parsed}
        if names != HEADER_NAMES or parsed.get_body(("html",)) is None:
            raise TemplateProblem(f"brand {self.brand.slug}: unexpected headers {sorted(names)}")

    # -- messages --------------------------------------------------------------------------

    def message_id(self, customer_id: str) -> str:
        """`<hex@sender-domain>` from (brand, campaign, customer): a re-send keeps it."""
        # Length-prefixed, so no choice of campaign and customer id can collide with another.
        key = "".join(f"{len(p)}:{p}" for p in (self.brand.slug, self.campaign, customer_id))
        return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{self.brand.sender_domain}>"

    def compose(self, recipient: Recipient, *, date: datetime | None = None) -> EmailMessage:
        """multipart/alternative (text, then HTML); `date` must be timezone-aware if given."""
        draft = self._draft(recipient, date)
        msg = EmailMessage(policy=POLICY)
        for name, value in draft.headers:
            msg.set_raw(name, value)  # stored as built: no re-parsing, no re-folding
        msg.set_payload([_mime_part(content_type, body) for content_type, body in draft.parts])
        return msg

    def compose_bytes(self, recipient: Recipient, *, date: datetime | None = None) -> bytes:
        """SMTP DATA (CRLF, 7-bit): byte for byte `to_bytes(self.compose(...))`, but faster."""
        return self._draft(recipient, date).serialise()

    def _draft(self, recipient: Recipient, date: datetime | None) -> Draft:
        rendered = self.render(recipient)
        msg_id = self.message_id(recipient.customer_id)
        # Quoted-printable never contains "=_", so this boundary cannot occur in a body.
        boundary = "=_" + msg_id[1:25]
        headers = (
            ("From", self._from),
            ("To", to_header(recipient)),
            ("Subject", self._subject_header(rendered.subject)),
            ("Date", format_datetime(_aware(date))),
            ("Message-ID", msg_id),
            # RFC 3834: out-of-office responders should not answer a mass announcement.
            ("Auto-Submitted", "auto-generated"),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'),
        )
        parts = (
            ('text/plain; charset="utf-8"', quoted_printable(rendered.text)),
            ('text/html; charset="utf-8"', quoted_printable(rendered.html)),
        )
        return Draft(headers, boundary, parts)

    def _subject_header(self, subject: str) -> str:
        # Subjects rarely vary per customer: cache the encoding, but never without bound.
        encoded = self._subjects.get(subject)
        if encoded is None:
            encoded = header_text("Subject", subject)
            if len(self._subjects) < 64:
                self._subjects[subject] = encoded
        return encoded


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


def _mime_part(content_type: str, body: str) -> MIMEPart:
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


def to_header(recipient: Recipient) -> str:
    """The To value; raises ValueError for an address these messages cannot carry."""
    if "\r" in recipient.email or "\n" in recipient.email:
        raise ValueError(f"customer {recipient.customer_id}: line break in e-mail address")
    addr = recipient.email.strip()
    name = clean_name(f"{recipient.first_name} {recipient.last_name}")
    return address_header("To", name, _ascii_domain(addr))


def address_header(field: str, name: str, addr: str) -> str:
    """`name <addr>`, name RFC 2047 encoded if needed, folded so lines stay within 78 columns.

    Built by hand rather than by `email.headerregistry`: that costs ~0.9 ms for a name with
    umlauts, and its folding is where CVE-2024-6923 turned `=?...?=` names into extra headers.
    """
    if not _ADDR_SPEC.fullmatch(addr):
        raise ValueError(f"not a plain e-mail address: {addr!r}")
    if not name:
        return addr
    phrase = _phrase(field, name)
    last_line = phrase.rpartition("\n")[2] if "\n" in phrase else f"{field}: {phrase}"
    fold = " " if len(last_line) + len(addr) + 3 <= 78 else "\r\n "
    return f"{phrase}{fold}<{addr}>"


def _phrase(field: str, name: str) -> str:
    if _ATOMS.fullmatch(name):
        return name
    if name.isascii():  # printable: clean_name removed control characters
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return header_text(field, name)


def _ascii_domain(addr: str) -> str:
    """IDN domains in punycode (IDNA 2008); a non-ASCII local part would need SMTPUTF8."""
    if addr.isascii():
        return addr
    # EmailNotValidError is a ValueError.
    checked = email_validator.validate_email(addr, check_deliverability=False)
    if checked.ascii_email is None:
        raise ValueError("non-ASCII local part needs SMTPUTF8, which these messages do not use")
    return checked.ascii_email


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    return value
