"""Matching notices to deliveries, and what each does to the state DB.

Matching: the original Message-ID first (derived from campaign and customer, it names one
delivery, and it stands even when the notice names another recipient: forwards, aliases,
pipes and lists rewrite the address, not the Message-ID); the recipient address second
(case-insensitive; for notices without the original's headers, and for lists). Exactly one
delivery (within `brands`, if given) is applied; none is unmatched; more are ambiguous and left
alone, since we cannot tell whose it is.

What a matched notice does:

- hard: the delivery becomes 'bounced', permanent: `rollout resend` skips it until the
  customer's address changes; `rollout unreachable` lists the customer.
- soft: the delivery becomes 'failed' for retry (`rollout resend`). With `sender_problem`, the
  customer is also marked so: `status` shows it as a blocker until they are mailed again, or
  `rollout bounces --clear-sender-problems` says it was fixed.
- complaint: the customer is never mailed again (not by notify, not by resend).
- delayed, autoreply, delivered: counted, nothing changes.

Nothing changes either, and it is counted as such, when the notice is

- already recorded: 'bounced', or 'failed' for good (a 5xx during the SMTP dialogue), or
  'failed' for retry and the notice is soft, or a complaint already known. So re-reading the
  same files changes nothing, soft never downgrades hard, and hard upgrades soft;
- stale: dated before the latest attempt of a delivery that is 'sent' or 'sending' (allowing
  `CLOCK_SKEW`). Staleness is judged by time, not by address: after a re-send, an old bounce
  must not queue the customer again. A bounce is dated by its Date, else its newest Received,
  else its arrival in the Maildir or its file's modification time; a list by its file's.

The matching needs no lock: each change is one short transaction of its own, and a send in
flight ('sending') is newer than any notice about an earlier attempt.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from rollout.bounces.model import Bounce, Kind, Notice, Unparsed
from rollout.model import DeliveryStatus
from rollout.state import Delivery, StateStore

CLOCK_SKEW = timedelta(minutes=2)  # the reporting MTA's clock may differ from ours a little
EXAMPLES = 5  # sources kept per kind of problem in the report (unparsed: all of them)


class Disposition(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    ALREADY = "already"
    STALE = "stale"
    DELAYED = "delayed"
    AUTOREPLY = "autoreply"
    IGNORED = "ignored"
    UNMATCHED = "unmatched"
    AMBIGUOUS = "ambiguous"
    UNPARSED = "unparsed"


_LABELS = {
    Disposition.HARD: "marked bounced (hard: dead address, not re-sent to it)",
    Disposition.SOFT: "marked failed (soft: `rollout resend` tries again)",
    Disposition.COMPLAINT: "complaints (never mailed again)",
    Disposition.ALREADY: "already recorded, nothing changed",
    Disposition.STALE: "stale (before the latest send), nothing changed",
    Disposition.DELAYED: "delayed (still queued), nothing changed",
    Disposition.AUTOREPLY: "auto-replies, ignored",
    Disposition.IGNORED: "not bounces (delivered, relayed, expanded)",
    Disposition.UNMATCHED: "unmatched (no such Message-ID or address)",
    Disposition.AMBIGUOUS: "ambiguous (several deliveries), not applied",
    Disposition.UNPARSED: "unparsed (not readable as a bounce), every one",
}
_WITH_EXAMPLES = {Disposition.STALE, Disposition.UNMATCHED, Disposition.AMBIGUOUS}
_NEEDS_NO_MATCH = {
    Kind.DELAYED: Disposition.DELAYED,
    Kind.AUTOREPLY: Disposition.AUTOREPLY,
    Kind.DELIVERED: Disposition.IGNORED,
}


@dataclass(frozen=True)
class Match:
    brand: str
    campaign: str
    customer_id: str
    by: str  # message_id or address


@dataclass(frozen=True)
class Result:
    """What one notice did (or, in a dry run, would do)."""

    notice: Notice
    outcome: Disposition
    match: Match | None = None
    detail: str = ""

    def record(self) -> dict[str, object]:
        """One line of `rollout bounces --json`: file, recipient, kind, status, reason,
        message_id, match."""
        n = self.notice
        if isinstance(n, Unparsed):
            return {
                "file": n.source,
                "recipient": None,
                "kind": "unparsed",
                "status": None,
                "reason": n.why,
                "message_id": None,
                "match": None,
            }
        match: dict[str, object] = {"outcome": self.outcome.value}
        if self.match is not None:
            match.update(
                brand=self.match.brand, customer_id=self.match.customer_id, by=self.match.by
            )
        if self.detail:
            match["detail"] = self.detail
        return {
            "file": n.source,
            "recipient": n.recipient,
            "kind": n.kind.value,
            "status": n.status or (str(n.code) if n.code else None),
            "reason": n.reason,
            "message_id": n.message_id,
            "match": match,
            "sender_problem": n.sender_problem,
        }


@dataclass
class BounceReport:
    """How many notices ended how; sources (no addresses) for those that need a look."""

    hard: int = 0
    soft: int = 0
    complaint: int = 0
    already: int = 0
    stale: int = 0
    delayed: int = 0
    autoreply: int = 0
    ignored: int = 0
    unmatched: int = 0
    ambiguous: int = 0
    unparsed: int = 0
    sender_problem: int = 0  # of the soft ones: caused by our side
    examples: dict[str, list[str]] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)  # what the notices said, matched or not

    def add(self, result: Result) -> None:
        outcome = result.outcome
        setattr(self, outcome, getattr(self, outcome) + 1)
        notice = result.notice
        kind = "unparsed" if isinstance(notice, Unparsed) else notice.kind.value
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if isinstance(notice, Bounce) and notice.sender_problem and outcome is Disposition.SOFT:
            self.sender_problem += 1
        if outcome in _WITH_EXAMPLES or outcome is Disposition.UNPARSED:
            kept = self.examples.setdefault(outcome, [])
            if outcome is Disposition.UNPARSED or len(kept) < EXAMPLES:
                why = notice.why if isinstance(notice, Unparsed) else result.detail
                kept.append(f"{notice.source} ({why})" if why else notice.source)

    @property
    def total(self) -> int:
        return sum(getattr(self, o) for o in Disposition)

    def lines(self) -> list[str]:
        out = [f"bounces: {self.total} notices read"]
        if self.kinds:
            said = ", ".join(f"{k} {self.kinds[k]}" for k in sorted(self.kinds))
            out.append(f"  by kind: {said}")
        for outcome, label in _LABELS.items():
            count = getattr(self, outcome)
            out.append(f"  {label}: {count}")
            if outcome is Disposition.SOFT and self.sender_problem:
                out.append(
                    f"      of which caused by our side (sender_problem): {self.sender_problem}"
                )
            shown = self.examples.get(outcome, [])
            out += [f"      {example}" for example in shown]
            if count > len(shown) > 0:
                out.append(f"      … and {count - len(shown)} more")
        return out


def apply_bounces(
    store: StateStore, notices: Iterable[Notice], brands: Collection[str] | None = None
) -> BounceReport:
    """Record each notice in the state DB as the module docstring says; count what happened."""
    report = BounceReport()
    for result in judge_notices(store, notices, brands):
        report.add(result)
    return report


def judge_notices(
    store: StateStore | None,
    notices: Iterable[Notice],
    brands: Collection[str] | None = None,
    dry_run: bool = False,
) -> Iterator[Result]:
    """What each notice does to the state DB; with `dry_run` (or a read-only store) what it
    would do, changing nothing. Without a store, nothing is matched."""
    for notice in notices:
        yield _judge(store, notice, brands, dry_run)


def _judge(
    store: StateStore | None, notice: Notice, brands: Collection[str] | None, dry_run: bool
) -> Result:
    if isinstance(notice, Unparsed):
        return Result(notice, Disposition.UNPARSED)
    if notice.kind in _NEEDS_NO_MATCH:
        return Result(notice, _NEEDS_NO_MATCH[notice.kind])
    if store is None:
        return Result(notice, Disposition.UNMATCHED, detail="no state DB")
    found = _match(store, notice, brands)
    if not found:
        return Result(notice, Disposition.UNMATCHED)
    if len(found) > 1:
        whose = ", ".join(sorted(f"{m.brand} {m.customer_id}" for m, _ in found))
        return Result(notice, Disposition.AMBIGUOUS, detail=whose)
    match, delivery = found[0]
    who = f"{match.brand} {match.customer_id}"
    if notice.kind is Kind.COMPLAINT:
        if store.has_mark(match.brand, match.customer_id, "complaint"):
            return Result(notice, Disposition.ALREADY, match)
        if not dry_run:
            store.add_mark(
                match.brand, match.campaign, match.customer_id, "complaint", notice.reason
            )
        return Result(notice, Disposition.COMPLAINT, match)
    stale = _stale(notice, delivery)
    if stale:
        return Result(notice, Disposition.STALE, match, f"{who}: {stale}")
    if not _would_change(notice, delivery):
        return Result(notice, Disposition.ALREADY, match)
    if not dry_run:
        store.mark_bounced(
            match.brand, match.campaign, match.customer_id, notice.hard, notice.code, notice.reason
        )
        if notice.sender_problem:
            label = notice.reason.split(":", 1)[0].removeprefix("bounce ").strip()
            store.add_mark(match.brand, match.campaign, match.customer_id, "sender_problem", label)
        else:  # the latest failure is not ours: no blocker for this customer any more
            store.clear_marks(match.brand, "sender_problem", match.customer_id)
    return Result(notice, Disposition.HARD if notice.hard else Disposition.SOFT, match)


def _match(
    store: StateStore, notice: Bounce, brands: Collection[str] | None
) -> list[tuple[Match, Delivery]]:
    """The Message-ID's deliveries; failing that, the first address that has any."""
    if notice.message_id:
        found = _within(store.deliveries_matching(message_id=notice.message_id), brands)
        if found:
            return [(Match(b, c, d.customer_id, "message_id"), d) for b, c, d in found]
    for address in notice.addresses:
        found = _within(store.deliveries_matching(address=address), brands)
        if found:
            return [(Match(b, c, d.customer_id, "address"), d) for b, c, d in found]
    return []


def _within(
    found: list[tuple[str, str, Delivery]], brands: Collection[str] | None
) -> list[tuple[str, str, Delivery]]:
    return found if brands is None else [f for f in found if f[0] in brands]


def _stale(notice: Bounce, delivery: Delivery) -> str:
    """Why the notice is about an earlier attempt than the delivery's latest, or ''."""
    if notice.date is None or delivery.status not in (DeliveryStatus.SENT, DeliveryStatus.SENDING):
        return ""
    sent = datetime.fromisoformat(delivery.updated_at)
    if notice.date < sent - CLOCK_SKEW:
        return f"dated {notice.date.astimezone(UTC):%Y-%m-%d %H:%M} UTC, before the latest send"
    return ""


def _would_change(notice: Bounce, delivery: Delivery) -> bool:
    if delivery.status is DeliveryStatus.BOUNCED or (
        delivery.status is DeliveryStatus.FAILED and delivery.permanent
    ):
        return False  # final already; a soft notice must not undo it
    return notice.hard or delivery.status is not DeliveryStatus.FAILED
