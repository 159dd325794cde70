"""Small types shared by several modules of the core."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
