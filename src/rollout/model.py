"""Small types shared by several modules of the core."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeliveryStatus(StrEnum):
    """Where a customer's mail stands in a campaign (no record at all: pending)."""

    SENDING = "sending"  # handed to the server, no answer yet (a run that dies leaves it)
    SENT = "sent"  # the server said 250
    FAILED = "failed"  # a 5xx, or retries used up; `permanent` says whether resend may help
    UNKNOWN = "unknown"  # the server may hold it but never said so: an operator decides
    BOUNCED = "bounced"  # a hard bounce came back: the address is dead


class PinSource(StrEnum):
    GENERATED = "generated"  # we drew a random PIN; the customer may change it
    KEPT = "kept"  # the export already held a valid hash


@dataclass(frozen=True)
class Recipient:
    """One customer to be told about the Legi-PIN; names are already sanitised at intake."""

    customer_id: str
    first_name: str
    last_name: str
    email: str
    pin_source: PinSource
