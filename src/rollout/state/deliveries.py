"""Deliveries: each customer's mail in a campaign, from claimed to sent, failed or unknown.

How customers are claimed, and taken back from runs that are gone: `rollout.state.claims`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rollout.state import schema
from rollout.state.base import sql
from rollout.state.claims import Claims
from rollout.state.records import DELIVERY_COLUMNS, Delivery, delivery_from_row

_SENDING = sql(
    """
    INSERT INTO deliveries (brand, campaign, customer_id, message_id, address,
                            status, attempts, updated_at, runner)
    VALUES (:brand, :campaign, :customer_id, :message_id, :address, 'sending', 1, :at, :runner)
    ON CONFLICT (brand, campaign, customer_id) DO UPDATE SET
        status = 'sending', message_id = excluded.message_id, address = excluded.address,
        attempts = deliveries.attempts + 1, updated_at = excluded.updated_at,
        runner = excluded.runner
    """
)
_FINISHED = sql(
    "UPDATE deliveries SET status = :status, code = :code, reason = :reason, "
    "permanent = :permanent, updated_at = :at "
    "WHERE brand = :brand AND campaign = :campaign AND customer_id = :customer_id"
)
_RELEASE = sql(
    "DELETE FROM deliveries WHERE brand = :brand AND campaign = :campaign "
    "AND customer_id = :customer_id AND status = 'sending'"
)
# Delivery's changes, each kind one statement per customer, keyed by the primary key.
_CHANGES = {"sending": _SENDING, "finished": _FINISHED, "released": _RELEASE}


def _change_params(
    kind: str, brand: str, campaign: str, values: Sequence[Any], runner: str
) -> list[dict[str, Any]]:
    """Each change's parameters for its statement in _CHANGES: 'sending' (customer_id,
    message_id, address), 'finished' (customer_id, status, code, reason, permanent),
    'released' (a customer_id)."""
    at = schema.now()
    if kind == "sending":
        return [
            {"brand": brand, "campaign": campaign, "customer_id": cid, "message_id": mid,
             "address": address, "at": at, "runner": runner}
            for cid, mid, address in values
        ]  # fmt: skip
    if kind == "finished":
        return [
            {"status": status, "code": code, "reason": reason, "permanent": int(permanent),
             "at": at, "brand": brand, "campaign": campaign, "customer_id": cid}
            for cid, status, code, reason, permanent in values
        ]  # fmt: skip
    return [{"brand": brand, "campaign": campaign, "customer_id": c} for c in values]


class Deliveries(Claims):
    """The delivery rows: the journal's changes, bounces, and what the reports read."""

    def mailed_among(self, brand: str, campaign: str, customer_ids: Sequence[str]) -> set[str]:
        """Those of `customer_ids` with any delivery record (sent, failed, unknown ...)."""
        rows = self._among(
            "SELECT customer_id FROM deliveries WHERE brand = :brand AND campaign = :campaign",
            {"brand": brand, "campaign": campaign},
            customer_ids,
        )
        return {r[0] for r in rows}

    # The journal records a batch of changes of one kind in one call (`record_changes`:
    # executemany). PostgreSQL's journal makes the same changes in one statement on a
    # connection of its own (rollout.state.pg_journal).

    def mark_sending(
        self, brand: str, campaign: str, customer_id: str, message_id: str, address: str
    ) -> None:
        """Handed to the server next."""
        self.record_changes(brand, campaign, "sending", [(customer_id, message_id, address)])

    def mark_finished(
        self,
        brand: str,
        campaign: str,
        customer_id: str,
        status: str,
        code: int | None,
        reason: str,
        permanent: bool = False,
    ) -> None:
        outcome = (customer_id, status, code, reason, permanent)
        self.record_changes(brand, campaign, "finished", [outcome])

    def release(self, brand: str, campaign: str, customer_id: str) -> None:
        """The server certainly did not take the message (or it was claimed and never sent):
        the customer is pending again."""
        self.record_changes(brand, campaign, "released", [customer_id])

    def record_changes(self, brand: str, campaign: str, kind: str, values: Sequence[Any]) -> None:
        """Changes of one `kind` ('sending', 'finished', 'released'; see `_change_params`)."""
        runner = self.runner if kind == "sending" else ""
        self._write(_CHANGES[kind], _change_params(kind, brand, campaign, values, runner))

    def deliveries_matching(
        self, *, message_id: str | None = None, address: str | None = None
    ) -> list[tuple[str, str, Delivery]]:
        """(brand, campaign, delivery) for a bounce's Message-ID or address (case-insensitive)."""
        if message_id is not None:
            where, arg = "message_id = :arg", message_id
        elif address is not None:
            where, arg = "lower(address) = lower(:arg)", address
        else:
            raise ValueError("give message_id or address")
        rows = self._rows(
            sql(f"SELECT brand, campaign, {DELIVERY_COLUMNS} FROM deliveries WHERE {where}"),
            {"arg": arg},
        )
        return [(r[0], r[1], delivery_from_row(r[2:])) for r in rows]

    def mark_bounced(
        self, brand: str, campaign: str, customer_id: str, hard: bool, code: int | None, reason: str
    ) -> None:
        """A hard bounce is final at this address; a soft one leaves the customer for resend."""
        status = "bounced" if hard else "failed"
        self.mark_finished(brand, campaign, customer_id, status, code, reason, permanent=hard)

    def deliveries(
        self, brand: str, campaign: str, statuses: Sequence[str] | None = None
    ) -> list[Delivery]:
        query = (
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries "
            "WHERE brand = :brand AND campaign = :campaign"
        )
        args: dict[str, object] = {"brand": brand, "campaign": campaign}
        if statuses:
            query += " AND status IN :statuses"
            args["statuses"] = [str(s) for s in statuses]
        clause = sql(query + " ORDER BY customer_id", *(["statuses"] if statuses else []))
        return [delivery_from_row(r) for r in self._rows(clause, args)]
