"""Customers: who holds which hash (and sealed PIN), rejects, who cannot be reached."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from rollout.model import PinSource
from rollout.state import schema
from rollout.state.base import Connected
from rollout.state.records import CustomerRecord, Reject, customer_from_row


class Customers(Connected):
    def known_hashes(
        self, brand: str, customer_ids: Sequence[str]
    ) -> dict[str, tuple[str, PinSource]]:
        """customer_id -> (hash, source) for those of `customer_ids` that already hold one."""
        rows = self._among(
            "SELECT customer_id, pin_hash, pin_source FROM customers WHERE brand = ?",
            [brand],
            customer_ids,
        )
        return {cid: (h, PinSource(src)) for cid, h, src in rows}

    def sealed_among(self, brand: str, customer_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """customer_id -> (hash, sealed PIN) for those of `customer_ids` with a sealed copy."""
        rows = self._among(
            "SELECT customer_id, pin_hash, pin_sealed FROM customers "
            "WHERE brand = ? AND pin_sealed IS NOT NULL",
            [brand],
            customer_ids,
        )
        return {cid: (h, sealed) for cid, h, sealed in rows}

    def record_chunk(
        self, brand: str, customers: Iterable[CustomerRecord], rejects: Iterable[Reject]
    ) -> None:
        """Store a chunk's customers and rejects in one transaction.

        A customer already present keeps their hash unless the export brings a different
        valid one (they changed it in the app since): then the export's hash is the truth.
        """
        stamp = schema.now()
        with self.transaction() as db:
            db.executemany(
                """
                INSERT INTO customers (brand, customer_id, pin_hash, pin_source, pin_since,
                    first_name, last_name, email, email_problem, updated_at, pin_sealed)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (brand, customer_id) DO UPDATE SET
                    pin_sealed = CASE WHEN excluded.pin_hash = pin_hash
                                      THEN coalesce(pin_sealed, excluded.pin_sealed)
                                      ELSE excluded.pin_sealed END,
                    pin_since = CASE WHEN excluded.pin_hash = pin_hash THEN pin_since
                                     ELSE excluded.pin_since END,
                    pin_source = CASE WHEN excluded.pin_hash = pin_hash THEN pin_source
                                      ELSE excluded.pin_source END,
                    pin_hash = excluded.pin_hash,
                    first_name = excluded.first_name,
                    last_name = excluded.last_name,
                    email = excluded.email,
                    email_problem = excluded.email_problem,
                    updated_at = excluded.updated_at
                """,
                (
                    (
                        brand,
                        c.customer_id,
                        c.pin_hash,
                        c.pin_source.value,
                        stamp,
                        c.first_name,
                        c.last_name,
                        c.email,
                        c.email_problem,
                        stamp,
                        c.pin_sealed,
                    )
                    for c in customers
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO rejects VALUES (?, ?, ?, ?, ?)",
                ((brand, r.row, r.customer_id, r.reason, r.detail) for r in rejects),
            )

    def forget_rejects(self, brand: str) -> None:
        """Rejects are derived from the export: a new read of it starts them afresh."""
        with self.transaction() as db:
            db.execute("DELETE FROM rejects WHERE brand = ?", (brand,))

    def rejects(self, brand: str) -> list[Reject]:
        rows = self.db.execute(
            "SELECT row, customer_id, reason, detail FROM rejects WHERE brand = ? ORDER BY row",
            (brand,),
        )
        return [Reject(*r) for r in rows]

    def customer(self, brand: str, customer_id: str) -> CustomerRecord | None:
        row = self.db.execute(
            "SELECT customer_id, pin_hash, pin_source, first_name, last_name, email, "
            "email_problem, pin_sealed FROM customers WHERE brand = ? AND customer_id = ?",
            (brand, customer_id),
        ).fetchone()
        return customer_from_row(row) if row else None

    def unreachable(self, brand: str) -> Iterator[tuple[str, str, str, str, str]]:
        """Customers the e-mail cannot reach: no usable address, or it failed for good there.

        They need another channel (letter, SMS).
        """
        yield from self.db.execute(
            """
            SELECT customer_id, first_name, last_name, email, email_problem FROM customers
            WHERE brand = ? AND email_problem IS NOT NULL
            UNION ALL
            SELECT c.customer_id, c.first_name, c.last_name, c.email,
                   d.status || ': ' || coalesce(d.code, '') || ' ' || d.reason
            FROM customers c JOIN deliveries d
              ON d.brand = c.brand AND d.customer_id = c.customer_id
            WHERE c.brand = ? AND d.permanent = 1 AND d.address = c.email
            ORDER BY 1
            """,
            (brand, brand),
        )

    def mark_unreachable(self, brand: str, customer_id: str, problem: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE customers SET email_problem = ?, updated_at = ? "
                "WHERE brand = ? AND customer_id = ?",
                (problem, schema.now(), brand, customer_id),
            )
