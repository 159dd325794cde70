"""Dry run: write each customer's e-mail as a `.eml` file plus an `index.html` to review them.

Nothing is sent and no state changes; files are written only into `out_dir` (earlier files there
are left alone, same-named ones replaced). Each file is written to a temporary name in `out_dir`
and renamed, so a symlink planted in `out_dir` is replaced, not followed.

`index.html` shows the counts, a table of all previewed messages and, for the first
`EMBED_LIMIT` of them, the HTML part in a sandboxed `<iframe srcdoc>` (no scripts run even if
a template were broken) and the plain-text part. Every value in it is HTML-escaped.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import jinja2

from rollout.brands import Brand, campaign_id, load_brands
from rollout.exports import export_path, open_export
from rollout.files import write_atomically
from rollout.messages import Composer
from rollout.model import Recipient
from rollout.notify import preview_audience
from rollout.settings import Settings
from rollout.state import StateStore

INDEX = "index.html"
# Bodies embedded in index.html; beyond this, rows link to their .eml file only (memory, browser).
EMBED_LIMIT = 200
REJECTED = "address rejected when composing"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9_.-]")
_VARIANTS = {"generated": "generated (new random PIN)", "kept": "kept (existing PIN)"}


@dataclass(frozen=True)
class PreviewSummary:
    brand: str
    written: int
    unreachable_by_reason: dict[str, int]
    index_path: Path
    # Everyone who would be mailed, also those beyond `limit` (and not written).
    would_mail: int = 0
    # Export rows refused when reading (not customers without an address): reason -> count.
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    customer_id: str
    filename: str
    to: str
    subject: str
    variant: str
    html: str | None
    text: str | None


def write_preview(
    out_dir: Path,
    brand: Brand,
    composer: Composer,
    recipients: Iterable[Recipient],
    unreachable: Iterable[tuple[str, str]] = (),
    limit: int | None = None,
    *,
    rejected: Iterable[tuple[str, str]] = (),
    not_shown: int = 0,
) -> PreviewSummary:
    """Write at most `limit` messages (all when None) and the index; raise TemplateProblem first
    if the templates are unfit. `unreachable` and `rejected` hold (customer id, reason) pairs;
    `not_shown` counts those who would be mailed but were left out before (beyond a limit)."""
    if composer.brand.slug != brand.slug:
        raise ValueError(f"composer is for {composer.brand.slug!r}, not {brand.slug!r}")
    composer.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    reasons = Counter(reason for _, reason in unreachable)
    refused = Counter(reason for _, reason in rejected)
    entries: list[_Entry] = []
    taken: set[str] = {INDEX}
    would_mail = not_shown
    for recipient in recipients:
        if limit is not None and len(entries) >= limit:
            would_mail += 1  # counted, not written
            continue
        try:
            data = composer.compose_bytes(recipient)
        except ValueError:  # an address the composer cannot carry: unreachable, not fatal
            reasons[REJECTED] += 1
            continue
        would_mail += 1
        name = eml_filename(recipient.customer_id, taken)
        write_atomically(out_dir / name, data)
        entries.append(_entry(recipient, name, data, embed=len(entries) < EMBED_LIMIT))
    index = out_dir / INDEX
    page = _render_index(brand, composer.campaign, entries, would_mail, reasons, refused)
    write_atomically(index, page.encode("utf-8"))
    return PreviewSummary(brand.slug, len(entries), dict(reasons), index, would_mail, dict(refused))


def preview_brands(settings: Settings, out_dir: Path) -> list[str]:
    """One folder per brand with an .eml per customer (at most `settings.limit`) and an
    index.html; returns a line per brand: how many would be mailed, how many are shown,
    rejects, unreachable. Reads the state DB (if any) to leave out who was mailed; changes
    nothing there."""
    lines = []
    brands, exports_dir, limit = settings.brands, settings.require_exports(), settings.limit
    store = StateStore.existing(settings.state_dir, settings.state_url)
    try:
        for b in load_brands(brands):
            composer = Composer(b, campaign_id(b))
            composer.validate()
            export = open_export(export_path(exports_dir, b), b)
            audience = preview_audience(export, b, store, limit)
            summary = write_preview(
                out_dir / b.slug,
                b,
                composer,
                audience.recipients,
                audience.unreachable,
                rejected=audience.rejected,
                not_shown=audience.not_shown,
            )
            lines.append(
                f"{b.slug}: {summary.would_mail} e-mails would be sent, {summary.written} shown "
                f"({audience.already_mailed} already mailed); "
                f"rejected: {_counts(summary.rejected_by_reason)}; "
                f"unreachable: {_counts(summary.unreachable_by_reason)}; "
                f"open {summary.index_path}"
            )
    finally:
        if store:
            store.close()
    return lines


def _counts(by_reason: dict[str, int]) -> str:
    return ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items())) or "none"


def eml_filename(customer_id: str, taken: set[str]) -> str:
    """A plain file name (letters, digits, `_.-`, no leading dot) unique in `taken`.

    An id that had to be changed gets a hash of the original, so `a/b` and `a_b` stay apart;
    `taken` compares case-insensitively for case-insensitive file systems.
    """
    stem = _UNSAFE_FILENAME.sub("_", customer_id).lstrip(".")[:64] or "customer"
    if stem != customer_id:
        stem = f"{stem}-{hashlib.sha256(customer_id.encode()).hexdigest()[:8]}"
    name, n = f"{stem}.eml", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.eml"
    taken.add(name.lower())
    return name


def _entry(recipient: Recipient, filename: str, data: bytes, *, embed: bool) -> _Entry:
    """What a mail client would show: parse the bytes just written."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return _Entry(
        customer_id=recipient.customer_id,
        filename=filename,
        to=str(msg["To"]),
        subject=str(msg["Subject"]),
        variant=_VARIANTS.get(str(recipient.pin_source), str(recipient.pin_source)),
        html=_body(msg, "html") if embed else None,
        text=_body(msg, "plain") if embed else None,
    )


def _body(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body((subtype,))
    return "" if part is None else str(part.get_content())


def _render_index(
    brand: Brand,
    campaign: str,
    entries: list[_Entry],
    would_mail: int,
    reasons: Counter[str],
    refused: Counter[str],
) -> str:
    embedded = [e for e in entries if e.html is not None]  # a prefix of entries
    first_of_variant = {e.variant: i for i, e in reversed(list(enumerate(embedded, 1)))}
    return _INDEX_TEMPLATE.render(
        brand=brand,
        campaign=campaign,
        entries=entries,
        embedded=embedded,
        opened=set(first_of_variant.values()),  # unfold one example of each variant
        would_mail=would_mail,
        reasons=reasons.most_common(),
        unreachable=sum(reasons.values()),
        refused=refused.most_common(),
        rejected=sum(refused.values()),
        embed_limit=EMBED_LIMIT,
    )


# autoescape=True: every {{ }} below is escaped, srcdoc included (quotes become &#34;).
_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
_INDEX_TEMPLATE = _ENV.from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Preview: {{ brand.display_name }} – {{ campaign }}</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; }
  table { border-collapse: collapse; margin: 1rem 0; }
  th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
  th { background: #f2f2f2; }
  details.msg { margin: 1rem 0; border: 1px solid #ccc; padding: .5rem 1rem; }
  iframe { width: 100%; height: 900px; border: 1px solid #ddd; background: #fff; }
  pre { white-space: pre-wrap; background: #f7f7f7; padding: 1rem; }
  .num { text-align: right; }
</style>
</head>
<body>
<h1>Preview: {{ brand.display_name }} – campaign {{ campaign }}</h1>
<p>Dry run: nothing was sent. From: {{ brand.sender_name }} &lt;{{ brand.sender_address }}&gt;</p>

<h2>Counts</h2>
<table>
<tr><th>would be mailed</th><td class="num">{{ would_mail }}</td></tr>
<tr><th>previewed here</th><td class="num">{{ entries|length }}</td></tr>
<tr><th>unreachable</th><td class="num">{{ unreachable }}</td></tr>
{% for reason, count in reasons %}
<tr><td>&nbsp;&nbsp;{{ reason }}</td><td class="num">{{ count }}</td></tr>
{% endfor %}
<tr><th>rejected (export rows)</th><td class="num">{{ rejected }}</td></tr>
{% for reason, count in refused %}
<tr><td>&nbsp;&nbsp;{{ reason }}</td><td class="num">{{ count }}</td></tr>
{% endfor %}
</table>

<h2>Messages</h2>
<table>
<tr><th>#</th><th>customer</th><th>to</th><th>subject</th><th>variant</th><th>file</th></tr>
{% for e in entries %}
<tr>
<td class="num">
{%- if loop.index <= embedded|length %}<a href="#m{{ loop.index }}">{{ loop.index }}</a>
{%- else %}{{ loop.index }}{% endif %}</td>
<td>{{ e.customer_id }}</td><td>{{ e.to }}</td><td>{{ e.subject }}</td><td>{{ e.variant }}</td>
<td><a href="{{ e.filename }}" download>{{ e.filename }}</a></td>
</tr>
{% endfor %}
</table>
{% if entries|length > embed_limit %}
<p>Bodies are shown for the first {{ embed_limit }} messages; open the .eml files for the rest.</p>
{% endif %}

{% for e in embedded %}
<details class="msg" id="m{{ loop.index }}"{% if loop.index in opened %} open{% endif %}>
<summary>#{{ loop.index }} · {{ e.customer_id }} · {{ e.to }} · {{ e.variant }}</summary>
<p><strong>Subject:</strong> {{ e.subject }}</p>
<iframe sandbox="" loading="lazy" title="HTML part for {{ e.customer_id }}"
  srcdoc="{{ e.html }}"></iframe>
<details><summary>plain-text part</summary><pre>{{ e.text }}</pre></details>
</details>
{% endfor %}
</body>
</html>
"""
)
