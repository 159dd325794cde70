"""The words: template files and fallbacks, German dates and lists, the Jinja environment."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import jinja2

from rollout.model import PinSource, Recipient

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
