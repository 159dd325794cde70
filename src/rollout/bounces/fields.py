"""DSN fields (RFC 3464), read as text wherever they are: a message/delivery-status part, or
text/plain that carries them.

Tolerated: recipient blocks without blank lines between them, continuation lines that lost
their indent, misspelt field names (`Final-Recipent`, `Diagnostic-code`), `Action: expired`,
and per-message fields mixed into the recipient blocks.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{1,40})\s?:\s*(.*)$", re.MULTILINE)
KNOWN = (
    "final-recipient",
    "original-recipient",
    "x-actual-recipient",
    "action",
    "status",
    "diagnostic-code",
    "remote-mta",
    "reporting-mta",
    "last-attempt-date",
    "arrival-date",
    "will-retry-until",
    "x-postfix-sender",
    "received-from-mta",
    "final-log-id",
)
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")
_PER_RECIPIENT = (*_RECIPIENT_FIELDS, "action", "status", "diagnostic-code", "remote-mta")


@dataclass
class Block:
    """One recipient's fields, names lower-case and spelt right."""

    fields: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    def recipient_fields(self) -> tuple[str, str, str]:
        """Original-Recipient first (the address we sent to), then where it was delivered."""
        return (
            self.get("original-recipient"),
            self.get("x-actual-recipient"),
            self.get("final-recipient"),
        )

    @property
    def has_recipient(self) -> bool:
        return any(self.fields.get(f) for f in _RECIPIENT_FIELDS)


def field_name(raw: str) -> str:
    """The DSN field a (maybe misspelt) name means, or the name lower-cased."""
    name = raw.lower().replace("_", "-")
    if name in KNOWN:
        return name
    close = difflib.get_close_matches(name, KNOWN, n=1, cutoff=0.85)
    return close[0] if close else name


def recipient_blocks(text: str) -> list[Block]:
    """The per-recipient blocks in DSN-style text (those with a recipient or an Action)."""
    blocks: list[Block] = []
    current = Block()
    last: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            last = None
            if current.fields.get("action") or current.has_recipient:
                blocks.append(current)
                current = Block()
            continue
        match = _FIELD.match(line)
        name = field_name(match.group(1)) if match else None
        if match and name is not None and (name in KNOWN or last is None or line[0] != " "):
            value = match.group(2).strip()
            starts_new = name in _RECIPIENT_FIELDS and current.fields.get(name)
            starts_new = starts_new or (name == "action" and current.fields.get("action"))
            if starts_new:
                blocks.append(current)
                current = Block()
            if name in _PER_RECIPIENT or name not in current.fields:
                current.fields[name] = value
            last = name
        elif last is not None and (line[:1] in (" ", "\t") or last == "diagnostic-code"):
            current.fields[last] = f"{current.fields[last]} {line.strip()}".strip()
        else:
            last = None
    if current.fields.get("action") or current.has_recipient:
        blocks.append(current)
    return [b for b in blocks if b.has_recipient or b.get("status")]


def looks_like_dsn_text(text: str) -> bool:
    """Plain text that carries DSN fields rather than prose."""
    names = {field_name(m.group(1)) for m in _FIELD.finditer(text.replace("\r\n", "\n"))}
    return ("final-recipient" in names or "original-recipient" in names) and (
        "action" in names or "status" in names
    )
