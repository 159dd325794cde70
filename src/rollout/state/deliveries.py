"""Deliveries: each customer's mail in a campaign, from pending to sent, failed or unknown.

Each delivery change is one statement, so one implicit transaction: durable in WAL without the
cost of an explicit BEGIN/COMMIT pair (it is paid per message).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rollout.model import PinSource, Recipient
from rollout.state import schema
from rollout.state.base import Connected
from rollout.state.records import DELIVERY_COLUMNS, Delivery, delivery_from_row


class Deliveries(Connected):
    def pending_recipients(
        self, brand: str, campaign: str, after: str = "", limit: int = 1000
    ) -> list[Recipient]:
        """Reachable customers with no delivery record yet, in customer_id order (keyset paging)."""
        rows = self.db.execute(
            """
            SELECT c.customer_id, c.first_name, c.last_name, c.email, c.pin_source
            FROM customers c
            WHERE c.brand = ? AND c.email_problem IS NULL AND c.customer_id > ?
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.brand = c.brand
                              AND d.campaign = ? AND d.customer_id = c.customer_id)
              AND NOT EXISTS (SELECT 1 FROM bounce_marks m WHERE m.brand = c.brand
                              AND m.customer_id = c.customer_id AND m.mark = 'complaint')
            ORDER BY c.customer_id LIMIT ?
            """,
            (brand, after, campaign, limit),
        )
        return [Recipient(r[0], r[1], r[2], r[3], PinSource(r[4])) for r in rows]

    def iter_pending(
        self, brand: str, campaign: str, limit: int | None = None, page: int = 1000
    ) -> Iterator[Recipient]:
        """All pending recipients (at most `limit`), a page at a time so memory stays flat."""
        after, left = "", limit
        while left is None or left > 0:
            size = page if left is None else min(page, left)
            batch = self.pending_recipients(brand, campaign, after, size)
            yield from batch
            if len(batch) < size:
                return
            after = batch[-1].customer_id
            left = None if left is None else left - len(batch)

    def mailed_among(self, brand: str, campaign: str, customer_ids: Sequence[str]) -> set[str]:
        """Those of `customer_ids` with any delivery record (sent, failed, unknown ...)."""
        rows = self._among(
            "SELECT customer_id FROM deliveries WHERE brand = ? AND campaign = ?",
            [brand, campaign],
            customer_ids,
        )
        return {r[0] for r in rows}

    # Each delivery change is one statement, so one implicit transaction: durable in WAL
    # without the cost of an explicit BEGIN/COMMIT pair (it is paid per message).

    def mark_sending(
        self, brand: str, campaign: str, customer_id: str, message_id: str, address: str
    ) -> None:
        self.db.execute(
            """
            INSERT INTO deliveries (brand, campaign, customer_id, message_id, address,
                                    status, attempts, updated_at)
            VALUES (?, ?, ?, ?, ?, 'sending', 1, ?)
            ON CONFLICT (brand, campaign, customer_id) DO UPDATE SET
                status = 'sending', address = excluded.address,
                attempts = attempts + 1, updated_at = excluded.updated_at
            """,
            (brand, campaign, customer_id, message_id, address, schema.now()),
        )

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
        self.db.execute(
            """
            UPDATE deliveries SET status = ?, code = ?, reason = ?, permanent = ?,
                   updated_at = ?
            WHERE brand = ? AND campaign = ? AND customer_id = ?
            """,
            (status, code, reason, int(permanent), schema.now(), brand, campaign, customer_id),
        )

    def release(self, brand: str, campaign: str, customer_id: str) -> None:
        """The server certainly did not take the message: the customer is pending again."""
        self.db.execute(
            "DELETE FROM deliveries WHERE brand = ? AND campaign = ? AND customer_id = ? "
            "AND status = 'sending'",
            (brand, campaign, customer_id),
        )

    def mark_interrupted(self, brand: str, campaign: str) -> int:
        """A run that died between 'sending' and the answer: the outcome is unknown."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE deliveries SET status = 'unknown', updated_at = ? "
                "WHERE brand = ? AND campaign = ? AND status = 'sending'",
                (schema.now(), brand, campaign),
            )
            return cur.rowcount

    def deliveries_matching(
        self, *, message_id: str | None = None, address: str | None = None
    ) -> list[tuple[str, str, Delivery]]:
        """(brand, campaign, delivery) for a bounce's Message-ID or address (case-insensitive)."""
        if message_id is not None:
            where, arg = "message_id = ?", message_id
        elif address is not None:
            where, arg = "lower(address) = lower(?)", address
        else:
            raise ValueError("give message_id or address")
        rows = self.db.execute(
            f"SELECT brand, campaign, {DELIVERY_COLUMNS} "  # noqa: S608 - fixed text
            f"FROM deliveries WHERE {where}",
            (arg,),
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
        query = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE brand = ? AND campaign = ?"  # noqa: S608
        args: list[object] = [brand, campaign]
        if statuses:
            query += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        rows = self.db.execute(query + " ORDER BY customer_id", args)
        return [delivery_from_row(r) for r in rows]
