"""What a transport reports: a reply, or one of the kinds of failure the delivery loop tells apart.

- `TransientError`: try again later (4xx, timeouts, dropped connections, refused connects),
  unless `maybe_delivered`: silence once DATA was sent, which the delivery loop records as
  unknown instead;
- `PermanentError`: this message will never be accepted (5xx for the recipient or content);
- `CampaignBlocked`: nothing will be accepted (5xx on greeting/EHLO/AUTH/MAIL FROM, TLS
  failures, STARTTLS missing): stop and leave the rest pending instead of failing everyone.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import NamedTuple, Protocol


class TransportConfigError(ValueError):
    """The transport URL or its environment is unusable; the message is one line."""


class DeliveryError(Exception):
    """A message was not accepted. `code` is the SMTP reply code when the server gave one."""

    def __init__(self, code: int | None, text: str, *, maybe_delivered: bool = False) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = " ".join(text.split())  # multi-line replies become one log line
        # True when the server went silent (dropped, timed out, unreadable) once the DATA
        # command was sent: it may hold the message, so a retry could deliver it twice.
        self.maybe_delivered = maybe_delivered

    @property
    def reason(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text

    def __str__(self) -> str:
        return self.reason


class TransientError(DeliveryError):
    """Worth another try later: 4xx, timeout, dropped or refused connection."""


class ConnectionFailed(TransientError):
    """No session could be opened (refused, timed out, 4xx greeting/EHLO/AUTH).

    Says nothing about any message: the delivery loop does not count it as an attempt.
    """


class PermanentError(DeliveryError):
    """This message will not be accepted (5xx on RCPT or DATA, unsendable address)."""


class CampaignBlocked(DeliveryError):
    """The server refuses us as a sender, so every further message would fail too."""


class Reply(NamedTuple):
    """How the destination acknowledged a message (e.g. 250 and the relay's queue id)."""

    code: int | None
    text: str

    @property
    def reason(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text


class Connection(Protocol):
    """One session with the destination, carrying one message at a time."""

    async def open(self) -> None:
        """Connect unless connected; raises ConnectionFailed or CampaignBlocked."""

    async def send(
        self, sender: str, recipient: str, data: bytes, ready: Awaitable[None] | None = None
    ) -> Reply:
        """Deliver one message, (re)connecting first if needed; raises DeliveryError kinds.

        `ready` (the state DB's 'sending' mark) is awaited before the destination can take the
        message (SMTP: before DATA), so its round trip overlaps the envelope's. If it raises,
        nothing is handed over and its error propagates."""

    async def close(self) -> None:
        """Politely end the session; never raises. `open`/`send` may reconnect later."""


class Transport(Protocol):
    @property
    def description(self) -> str:
        """Where mail goes, safe for logs (never a password)."""

    def connection(self) -> Connection:
        """A new connection, not yet opened."""
