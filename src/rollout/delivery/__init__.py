"""Deliver many messages over a small pool of persistent connections, and account for each.

Shape: one producer task takes messages from the input and puts them on a queue; N workers,
each owning one connection, take them off and send them one at a time. Around that:

- a window (`max_in_flight`) bounds the messages taken but not yet finished, so memory stays
  flat however large a lazy input is. The producer runs on the event loop: an input that
  composes messages as it goes does that CPU work there (it yields to the workers after each);
- a token bucket limits transactions per second across all workers, retries included;
- transient failures are retried with full-jitter exponential backoff via a timer that
  re-queues the message, so no worker sleeps on one message; permanent ones fail at once;
- a `CampaignBlocked` error (or `stop`) halts everything: transactions in progress finish,
  nothing new starts, and every message not finished is left for a later run.

Every message taken from the input ends in exactly one of: `finished` sent, `finished` failed,
`finished` unknown (the connection died, timed out or answered unreadably once the DATA
command was sent: the server may hold the message), `released` (tried, certainly not accepted:
back to pending), or not attempted at all. `DeliveryStats` counts each. The journal's
`sending` is awaited before the message can be taken (the transport waits for it before
DATA; it returns once the mark is durable); the outcomes may be recorded in batches, and
`deliver` flushes the journal before it returns.

An unknown outcome is never retried here: only a definite reply (4xx, 421) or a failure before
DATA is. Mailing an unknown customer again is an operator's decision (`resend
--include-unknown`), and then carries the same Message-ID, derived from (campaign, customer).

The package: `model` (messages, outcomes, settings, counts, the journal), `pacing` (rate limit
and backoff), `run` (the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Iterable

from rollout.delivery.model import (
    DeliverySettings,
    DeliveryStats,
    Journal,
    Outcome,
    OutgoingMessage,
)
from rollout.delivery.pacing import RateLimiter, backoff_delay
from rollout.delivery.run import Run
from rollout.transports import Transport

__all__ = [
    "DeliverySettings",
    "DeliveryStats",
    "Journal",
    "Outcome",
    "OutgoingMessage",
    "RateLimiter",
    "backoff_delay",
    "deliver",
]


async def deliver(
    messages: Iterable[OutgoingMessage] | AsyncIterable[OutgoingMessage],
    transport: Transport,
    journal: Journal,
    settings: DeliverySettings | None = None,
    progress: Callable[[Outcome], None] | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> DeliveryStats:
    """Send every message; return the counts. Setting `stop` halts like a blocked campaign
    (no `blocked` reason). Errors of the input, the journal or `progress` propagate once the
    transactions in progress have ended and the journal is flushed."""
    run = Run(transport, journal, settings or DeliverySettings(), progress)
    return await run.execute(messages, stop)
