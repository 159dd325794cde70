"""What goes in and comes out of a delivery: messages, outcomes, settings, counts, the journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from rollout.model import DeliveryStatus
from rollout.transports import CampaignBlocked


@dataclass(frozen=True)
class OutgoingMessage:
    customer_id: str
    message_id: str
    sender: str  # envelope sender (MAIL FROM)
    recipient: str  # envelope recipient (RCPT TO)
    data: bytes = field(repr=False)  # the serialised message, CRLF line endings


@dataclass(frozen=True)
class Outcome:
    customer_id: str
    message_id: str
    status: DeliveryStatus
    attempts: int
    code: int | None  # the server's reply code, if it gave one
    reason: str  # the server's code and text (e.g. "550 5.1.1 ... (at RCPT TO)") or a description
    permanent: bool = False  # failed for good at this address (5xx, unsendable address)


class Journal(Protocol):
    """Where each message's fate is recorded (the state DB). Called on the event loop thread.

    Only `sending` is awaited before the transaction: the outcomes may be recorded later, in
    batches, but all of them by the time `flush` returns. `finished` and `released` must not
    raise (they are called while delivery halts): a failure to record them is raised by the
    next `sending` or by `flush`. An exception from either stops the delivery and propagates.
    """

    async def sending(self, message: OutgoingMessage) -> None:
        """As each SMTP transaction (every attempt) begins: record 'sending', and return only
        once that is durable. The transport hands the message over (DATA) only after that."""

    def finished(self, outcome: Outcome) -> None:
        """After the server's 250 ('sent'), a 5xx or the last failed attempt ('failed'), or
        when the server may hold the message but never said so ('unknown')."""

    def released(self, message: OutgoingMessage) -> None:
        """A message recorded as 'sending' was certainly not accepted and delivery stopped
        before it could be retried: revert it to pending."""

    async def flush(self) -> None:
        """Return once everything reported so far is durable. Called before `deliver` returns."""


@dataclass(frozen=True)
class DeliverySettings:
    connections: int = 4  # workers, each with one persistent connection
    rate_per_second: float | None = None  # transactions per second, all workers together
    burst: int = 1  # transactions allowed back to back before the rate applies
    max_attempts: int = 5  # per message, the first included
    backoff_base: float = 1.0  # seconds; retry n waits uniform(0, min(max, base * 2**(n-1)))
    backoff_max: float = 60.0
    connect_attempts: int = 5  # failed connects in a row before a worker gives up
    idle_timeout: float = 30.0  # close a connection that had nothing to send this long
    max_in_flight: int = 1000  # messages taken from the input and not yet finished

    def __post_init__(self) -> None:
        counts = ("connections", "burst", "max_attempts", "connect_attempts", "max_in_flight")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.rate_per_second is not None and not self.rate_per_second > 0:
            raise ValueError("rate_per_second must be positive (or None for no limit)")
        if self.backoff_base < 0 or self.backoff_max < 0 or not self.idle_timeout > 0:
            raise ValueError("backoff times must not be negative, idle_timeout must be positive")


@dataclass
class DeliveryStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0  # transient failures followed by another attempt
    not_attempted: int = 0  # taken from the input, never tried (delivery stopped first)
    released: int = 0  # tried, certainly not accepted, handed back via Journal.released
    unknown: int = 0  # the server may hold it: no reply after the DATA command was sent
    blocked: CampaignBlocked | None = None  # why delivery stopped early, if it did
    elapsed: float = 0.0  # seconds

    @property
    def taken(self) -> int:
        """Messages taken from the input: each is counted in exactly one of the fields."""
        return self.sent + self.failed + self.not_attempted + self.released + self.unknown

    @property
    def left_pending(self) -> int:
        return self.not_attempted + self.released
