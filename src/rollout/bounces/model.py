"""What reading a bounce yields: one notice per recipient, or why a file says nothing usable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Kind(StrEnum):
    """What a notice means for the customer it names (README, "Bounces")."""

    HARD = "hard"  # the address is dead: no more mail to it
    SOFT = "soft"  # the address may work: `rollout resend` tries again
    DELAYED = "delayed"  # still queued somewhere: counted, nothing changes
    COMPLAINT = "complaint"  # an ARF feedback report: never mailed again
    AUTOREPLY = "autoreply"  # out of office and the like: counted, ignored
    DELIVERED = "delivered"  # a DSN saying delivered, relayed or expanded: not a bounce


@dataclass(frozen=True)
class Bounce:
    """One recipient's fate as a DSN block, a plain-text bounce, an ARF report or a list row
    reports it."""

    source: str  # file, file#n (mbox), maildir#key or file:line (list)
    kind: Kind
    message_id: str | None  # the original's, normalised to <id>
    addresses: tuple[str, ...]  # Original-Recipient first, then Final-Recipient
    code: int | None  # basic SMTP code (550)
    status: str | None  # enhanced status code (5.1.1)
    reason: str  # what the state DB keeps: category, status and the server's words, redacted
    date: datetime | None  # when the notice was written, if known
    sender_problem: bool = False  # a soft failure caused by our side (blocked, spam, auth)

    @property
    def hard(self) -> bool:
        return self.kind is Kind.HARD

    @property
    def recipient(self) -> str | None:
        return self.addresses[-1] if self.addresses else None


@dataclass(frozen=True)
class Unparsed:
    source: str
    why: str


Notice = Bounce | Unparsed
