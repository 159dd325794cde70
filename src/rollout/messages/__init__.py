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

The package: `wording` (templates, German dates and lists), `composer` (one customer's e-mail),
`wire` (headers, MIME, bytes).
"""

from rollout.messages.composer import Composer
from rollout.messages.wire import HEADER_NAMES, to_bytes
from rollout.messages.wording import (
    TemplateProblem,
    german_date,
    join_de,
    make_environment,
    sample_recipient,
)

__all__ = [
    "HEADER_NAMES",
    "Composer",
    "TemplateProblem",
    "german_date",
    "join_de",
    "make_environment",
    "sample_recipient",
    "to_bytes",
]
