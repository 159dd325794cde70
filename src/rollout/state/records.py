"""What the state DB holds, as Python values: customers, rejects, deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollout.model import DeliveryStatus, PinSource


@dataclass(frozen=True)
class CustomerRecord:
    """A customer as the state DB keeps them (no plaintext PIN exists here, ever)."""

    customer_id: str
    pin_hash: str
    pin_source: PinSource
    first_name: str
    last_name: str
    email: str
    email_problem: str | None
    pin_sealed: str | None = None  # generated PINs only: the sealed copy (rollout.seal)


@dataclass(frozen=True)
class Reject:
    row: int
    customer_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class Delivery:
    customer_id: str
    message_id: str
    address: str
    status: DeliveryStatus
    permanent: bool
    attempts: int
    code: int | None
    reason: str
    updated_at: str  # when the delivery last changed: the latest send, for 'sent'


DELIVERY_COLUMNS = (
    "customer_id, message_id, address, status, permanent, attempts, code, reason, updated_at"
)


def delivery_from_row(row: Sequence[object]) -> Delivery:
    cid, mid, address, status, permanent, attempts, code, reason, updated = row
    return Delivery(
        str(cid),
        str(mid),
        str(address),
        DeliveryStatus(str(status)),
        bool(permanent),
        int(attempts),  # type: ignore[call-overload]
        None if code is None else int(code),  # type: ignore[call-overload]
        str(reason),
        str(updated),
    )


def customer_from_row(row: Sequence[object]) -> CustomerRecord:
    return CustomerRecord(
        customer_id=str(row[0]),
        pin_hash=str(row[1]),
        pin_source=PinSource(str(row[2])),
        first_name=str(row[3]),
        last_name=str(row[4]),
        email=str(row[5]),
        email_problem=None if row[6] is None else str(row[6]),
        pin_sealed=None if row[7] is None else str(row[7]),
    )
