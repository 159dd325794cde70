"""The composer: one brand's e-mail for one customer, as an EmailMessage or as wire bytes."""

from __future__ import annotations

import email
import email.policy
import hashlib
import traceback
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import NamedTuple

import css_inline
import jinja2

from rollout.addresses import clean_name, one_line
from rollout.brands import Brand, templates_root
from rollout.messages.skeletons import (
    ID_SLOT,
    NAME_SLOT,
    EncodedSkeleton,
    Skeleton,
    Values,
    fill,
    skeleton,
)
from rollout.messages.wire import (
    HEADER_NAMES,
    POLICY,
    Draft,
    address_header,
    aware,
    header_text,
    mime_part,
    quoted_printable,
    to_header,
)
from rollout.messages.wording import (
    FALLBACKS,
    HTML,
    SUBJECT,
    TEXT,
    Rendered,
    TemplateProblem,
    german_date,
    make_environment,
    sample_recipient,
)
from rollout.model import PinSource, Recipient


def _as_html_text(value: str) -> str:
    """Escape text content exactly as css-inline's HTML serialiser writes it back."""
    escaped = value.replace("&", "&amp;").replace("\xa0", "&nbsp;")
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


def _encoded(rendered: Rendered) -> tuple[str, str, str]:
    """The subject, and the text and HTML as quoted-printable."""
    return rendered.subject, quoted_printable(rendered.text), quoted_printable(rendered.html)


class Skeletons(NamedTuple):
    subject: Skeleton
    text: EncodedSkeleton
    html: EncodedSkeleton


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
        # Subject, text and inlined HTML per (variant, has a name), rendered once with slots
        # for the customer's values; trusted only after validate() has shown that filling them
        # equals rendering (and encoding) each mail in full.
        self._skeletons: dict[tuple[str, bool], Skeletons] = {}
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
        if self._skeletons_checked:
            return self._from_skeletons(recipient)
        return self._render_in_full(self._context(recipient))

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

    def _render_in_full(self, context: dict[str, object]) -> Rendered:
        return Rendered(
            subject=one_line(self._render(self._subject, context)),
            text=self._render(self._text, context),
            # Inline the rendered HTML, never the template source: css-inline mangles Jinja.
            html=self._inliner.inline(self._render(self._html, context)),
        )

    def _from_skeletons(self, recipient: Recipient) -> Rendered:
        """What `_render_in_full` gives, from the skeletons (`rollout.messages.skeletons`)."""
        skeletons, plain, escaped = self._filling(recipient)
        return Rendered(
            subject=one_line(fill(skeletons.subject, plain)),
            text=fill(skeletons.text.whole, plain),
            html=fill(skeletons.html.whole, escaped),
        )

    def _filling(self, recipient: Recipient) -> tuple[Skeletons, Values, Values]:
        """This customer's skeletons (rendered on first use) and the values for their slots,
        plain and escaped for HTML."""
        name = one_line(recipient.first_name)
        key = (PinSource(recipient.pin_source).value, bool(name))
        skeletons = self._skeletons.get(key)
        if skeletons is None:
            stand_in = {"first_name": NAME_SLOT if name else "", "customer_id": ID_SLOT}
            full = self._render_in_full({**self._context(recipient), **stand_in})
            skeletons = Skeletons(
                skeleton(full.subject),
                EncodedSkeleton.of(skeleton(full.text)),
                EncodedSkeleton.of(skeleton(full.html)),
            )
            self._skeletons[key] = skeletons
        plain = {NAME_SLOT: name, ID_SLOT: recipient.customer_id}
        escaped = {slot: _as_html_text(value) for slot, value in plain.items()}
        return skeletons, plain, escaped

    def _subject_and_bodies(self, recipient: Recipient) -> tuple[str, str, str]:
        """The subject, and the text and HTML as quoted-printable."""
        if self._skeletons_checked:
            return self._encoded_from_skeletons(recipient)
        return _encoded(self.render(recipient))

    def _encoded_from_skeletons(self, recipient: Recipient) -> tuple[str, str, str]:
        """What `_encoded` gives of `_from_skeletons`, encoding only the lines with a value."""
        skeletons, plain, escaped = self._filling(recipient)
        subject = one_line(fill(skeletons.subject, plain))
        return subject, skeletons.text.fill(plain), skeletons.html.fill(escaped)

    def validate(self) -> None:
        """Render both variants for a hostile sample customer; raise TemplateProblem if unfit.

        Also decides whether mails may be built from skeletons: only if, for the samples,
        that gives the same subject, text and HTML as rendering each mail in full (a template
        that transforms or tests a name's value would not).
        """
        same = True  # byte for byte, or a '|safe' in a template could hide behind our escaping
        for source in PinSource:
            for recipient in (sample_recipient(source), _plain_sample(source)):
                full = self._render_in_full(self._context(recipient))
                same &= self._from_skeletons(recipient) == full
                same &= self._encoded_from_skeletons(recipient) == _encoded(full)
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
        msg.set_payload([mime_part(content_type, body) for content_type, body in draft.parts])
        return msg

    def compose_bytes(self, recipient: Recipient, *, date: datetime | None = None) -> bytes:
        """SMTP DATA (CRLF, 7-bit): byte for byte `to_bytes(self.compose(...))`, but faster."""
        return self._draft(recipient, date).serialise()

    def _draft(self, recipient: Recipient, date: datetime | None) -> Draft:
        subject, text, html = self._subject_and_bodies(recipient)
        msg_id = self.message_id(recipient.customer_id)
        # Quoted-printable never contains "=_", so this boundary cannot occur in a body.
        boundary = "=_" + msg_id[1:25]
        headers = (
            ("From", self._from),
            ("To", to_header(recipient)),
            ("Subject", self._subject_header(subject)),
            ("Date", format_datetime(aware(date))),
            ("Message-ID", msg_id),
            # RFC 3834: out-of-office responders should not answer a mass announcement.
            ("Auto-Submitted", "auto-generated"),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'),
        )
        parts = (('text/plain; charset="utf-8"', text), ('text/html; charset="utf-8"', html))
        return Draft(headers, boundary, parts)

    def _subject_header(self, subject: str) -> str:
        # Subjects rarely vary per customer: cache the encoding, but never without bound.
        encoded = self._subjects.get(subject)
        if encoded is None:
            encoded = header_text("Subject", subject)
            if len(self._subjects) < 64:
                self._subjects[subject] = encoded
        return encoded
