"""The notification stage: who is told, in which words, and what the state DB says of each mail.

The state DB is written as each SMTP transaction begins ('sending', committed before the
server can take the message: before DATA) and after its answer ('sent', 'failed', committed
with the next batch: see rollout.journal), so a kill leaves at most the messages in flight,
and the outcomes not yet committed, as 'unknown': reported, never mailed again unless someone
asks (`resend --include-unknown`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from rollout.brands import Brand, campaign_id
from rollout.delivery import DeliverySettings, Outcome, OutgoingMessage, deliver
from rollout.exports import Export
from rollout.journal import journal_for
from rollout.messages import Composer
from rollout.model import DeliveryStatus, PinSource, Recipient
from rollout.shutdown import Interrupted, requested, stop_gracefully
from rollout.state import Delivery, StateStore
from rollout.transports import Transport


class DeadlinePassed(RuntimeError):
    """The announcement would arrive after the date it announces."""


class SendingBlocked(RuntimeError):
    """The relay refuses us (no connection, TLS, AUTH, sender refused): nothing more can be
    sent until someone fixes that. Everyone not yet sent stays pending."""


def check_deadline(brand: Brand, today: date, after_deadline: bool) -> None:
    if today > brand.mandatory_date and not after_deadline:
        raise DeadlinePassed(
            f"{brand.display_name}: the Legi-PIN became mandatory on "
            f"{brand.mandatory_date:%d.%m.%Y}; an announcement now would come too late. "
            "Pass --after-deadline (deployment parameter settings.after_deadline=true) to send it "
            "anyway."
        )


@dataclass
class NotifySummary:
    brand: str
    campaign: str
    sent: int = 0
    failed: int = 0
    retried: int = 0
    not_attempted: int = 0
    released: int = 0  # tried, certainly not accepted: pending again
    unknown: int = 0  # the connection died after the body went out: maybe accepted
    unknown_found: int = 0  # left 'sending' by an earlier run that died
    unusable_address: int = 0  # found unusable while composing: now unreachable
    skipped_permanent: list[str] = field(default_factory=list)
    skipped_complaint: int = 0  # complained (ARF): never mailed again
    blocked: str | None = None
    stopped_by: int | None = None  # the signal that stopped sending early, if one did

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    def raise_if_stopped(self) -> None:
        """After the outcome is recorded and reported: a run that stopped early must not look
        like one that finished."""
        if self.stopped_by is not None:
            raise Interrupted(self.stopped_by)
        if self.blocked:
            raise SendingBlocked(
                f"{self.brand}: sending stopped after {self.sent} sent: {self.blocked}; "
                "everyone not yet sent is still pending"
            )


def outgoing(
    recipients: Iterable[Recipient],
    composer: Composer,
    brand: Brand,
    unusable: Callable[[Recipient], None],
) -> Iterator[OutgoingMessage]:
    """Compose lazily, so memory holds only what the delivery queue holds.

    An address the composer cannot put in a header (intake let it through) makes that one
    customer unreachable; it never stops the wave.
    """
    for r in recipients:
        try:
            data = composer.compose_bytes(r)
        except ValueError:
            unusable(r)
            continue
        yield OutgoingMessage(
            customer_id=r.customer_id,
            message_id=composer.message_id(r.customer_id),
            sender=brand.sender_address,
            recipient=r.email,
            data=data,
        )


async def notify_brand(
    brand: Brand,
    store: StateStore,
    transport: Transport,
    settings: DeliverySettings,
    *,
    limit: int | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> NotifySummary:
    """Mail every reachable customer not yet mailed (at most `limit`: one wave)."""
    summary = NotifySummary(brand.slug, campaign_id(brand))
    composer = Composer(brand, summary.campaign)
    composer.validate()  # a template error stops us before the first mail, not after 1000
    summary.unknown_found = store.mark_interrupted(brand.slug, summary.campaign)
    # Claimed a page at a time as the queue takes them: another run sharing the DB
    # (PostgreSQL) never gets the same customers; what is claimed but not sent goes back.
    with store.claims(brand.slug, summary.campaign, limit) as recipients:
        await _send(brand, store, composer, transport, settings, recipients, summary, progress)
    return summary


async def resend_brand(
    brand: Brand,
    store: StateStore,
    transport: Transport,
    settings: DeliverySettings,
    *,
    include_unknown: bool = False,
    progress: Callable[[Outcome], None] | None = None,
) -> NotifySummary:
    """Mail again those who did not get it: failed, bounced and (if asked) unknown.

    The customer's current address is used (a newer export may have changed it); a permanent
    failure at an address that is still the same is not tried again but listed. Whoever
    complained (an ARF report) is never mailed again.
    """
    summary = NotifySummary(brand.slug, campaign_id(brand))
    composer = Composer(brand, summary.campaign)
    composer.validate()
    summary.unknown_found = store.mark_interrupted(brand.slug, summary.campaign)
    retry: list[Recipient] = []
    for d in store.deliveries(brand.slug, summary.campaign, resend_statuses(include_unknown)):
        if store.has_mark(brand.slug, d.customer_id, "complaint"):
            summary.skipped_complaint += 1  # they said "spam": never mailed again
            continue
        recipient = _current_recipient(store, brand, d)
        if recipient is None or (d.permanent and recipient.email == d.address):
            summary.skipped_permanent.append(d.customer_id)
        else:
            retry.append(recipient)
    await _send(brand, store, composer, transport, settings, retry, summary, progress)
    return summary


def resend_statuses(include_unknown: bool) -> list[DeliveryStatus]:
    """Who did not receive it: failed or bounced, and only if asked, those left unknown."""
    return [DeliveryStatus.FAILED, DeliveryStatus.BOUNCED] + (
        [DeliveryStatus.UNKNOWN] if include_unknown else []
    )


def _current_recipient(store: StateStore, brand: Brand, d: Delivery) -> Recipient | None:
    c = store.customer(brand.slug, d.customer_id)
    if c is None or c.email_problem:
        return None
    return Recipient(c.customer_id, c.first_name, c.last_name, c.email, c.pin_source)


async def _send(
    brand: Brand,
    store: StateStore,
    composer: Composer,
    transport: Transport,
    settings: DeliverySettings,
    recipients: Iterable[Recipient],
    summary: NotifySummary,
    progress: Callable[[Outcome], None] | None,
) -> None:
    def unusable(r: Recipient) -> None:
        with store.transaction():
            store.mark_unreachable(brand.slug, r.customer_id, "bad_email")
            store.release(brand.slug, summary.campaign, r.customer_id)  # its claim, if any
        summary.unusable_address += 1

    messages = outgoing(recipients, composer, brand, unusable)
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    # SIGTERM/SIGINT: take nobody new, let the transactions in flight finish and be recorded.
    journal = journal_for(store, brand.slug, summary.campaign)  # by backend: rollout.journal
    async with journal:
        with stop_gracefully(lambda: loop.call_soon_threadsafe(stop.set)):
            stats = await deliver(messages, transport, journal, settings, progress, stop=stop)
    summary.stopped_by = requested()
    summary.sent, summary.failed, summary.retried = stats.sent, stats.failed, stats.retried
    summary.not_attempted, summary.released = stats.not_attempted, stats.released
    summary.unknown = stats.unknown
    summary.blocked = str(stats.blocked) if stats.blocked else None


@dataclass
class Audience:
    """Who an announcement would reach, read from the export without changing any state."""

    recipients: list[Recipient] = field(default_factory=list)
    unreachable: list[tuple[str, str]] = field(default_factory=list)  # (customer_id, reason)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # bad export rows
    already_mailed: int = 0
    not_shown: int = 0  # would be mailed, but beyond `limit`


def preview_audience(
    export: Export, brand: Brand, store: StateStore | None, limit: int | None = None
) -> Audience:
    """The customers `notify` would mail now; the state DB (if any) says who was mailed."""
    audience = Audience()
    campaign = campaign_id(brand)
    for chunk in export.chunks():
        ids = chunk.customers["customer_id"].tolist()
        mailed = store.mailed_among(brand.slug, campaign, ids) if store else set()
        known = store.known_hashes(brand.slug, ids) if store else {}
        for reject in chunk.rejects.itertuples(index=False):
            audience.rejected.append((str(reject.customer_id), str(reject.reason)))
        for c in chunk.customers.itertuples(index=False):
            if c.email_problem:
                audience.unreachable.append((str(c.customer_id), str(c.email_problem)))
            elif c.customer_id in mailed:
                audience.already_mailed += 1
            elif limit is not None and len(audience.recipients) >= limit:
                audience.not_shown += 1  # counted, not composed
            else:
                recorded = known.get(str(c.customer_id))
                source = (
                    PinSource.KEPT
                    if c.pin_hash
                    else recorded[1]
                    if recorded
                    else PinSource.GENERATED
                )
                audience.recipients.append(
                    Recipient(
                        str(c.customer_id),
                        str(c.first_name),
                        str(c.last_name),
                        str(c.email),
                        source,
                    )
                )
    return audience
