"""Codes and words out of a server's reply, and the reason text the state DB keeps.

A stored reason never carries an e-mail address: they are replaced by `<address>`, so status,
reports and the Prefect artifact name no customer.
"""

from __future__ import annotations

import re

from rollout.addresses import redact_addresses

REASON_LIMIT = 300  # characters of the server's words kept in the state DB

_LEADING_CODE = re.compile(r"(?<![\d.])([245][0-5]\d)(?:[\s-]|$)")  # "550 5.1.1" or "550-5.1.1"
_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")


def enhanced_status(value: object) -> str | None:
    found = _ENHANCED.search(str(value or ""))
    return found.group(1) if found else None


def basic_code(text: str) -> int | None:
    found = _LEADING_CODE.search(text.strip())
    return int(found.group(1)) if found else None


def diagnostic(value: str) -> str:
    """The server's words: unfolded, without the `smtp;` type."""
    text = " ".join(value.split())
    kind, sep, rest = text.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else text


def reason(category: str, status: str | None, code: int | None, words: str) -> str:
    """`bounce <category> <status>: <words>`, addresses redacted, cut to REASON_LIMIT."""
    label = " ".join(x for x in ("bounce", category, status or (str(code) if code else "")) if x)
    text = redact_addresses(" ".join(words.split()))
    return (f"{label}: {text}" if text else label)[:REASON_LIMIT]
