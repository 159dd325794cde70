"""Customers: who holds which hash (and sealed PIN), rejects, who cannot be reached."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from rollout.model import PinSource
from rollout.state import schema
from rollout.state.base import Connected, sql
from rollout.state.records import CustomerRecord, Reject, customer_from_row

# A customer already present keeps their hash unless the export brings a different valid one
# (they changed it in the app since): then the export's hash is the truth.
_UPSERT = sql(
    """
    INSERT INTO customers (brand, customer_id, pin_hash, pin_source, pin_since,
        first_name, last_name, email, email_problem, updated_at, pin_sealed)
    VALUES (:brand, :customer_id, :pin_hash, :pin_source, :stamp,
        :first_name, :last_name, :email, :email_problem, :stamp, :pin_sealed)
    ON CONFLICT (brand, customer_id) DO UPDATE SET
        pin_sealed = CASE WHEN excluded.pin_hash = customers.pin_hash
                          THEN coalesce(customers.pin_sealed, excluded.pin_sealed)
                          ELSE excluded.pin_sealed END,
        pin_since = CASE WHEN excluded.pin_hash = customers.pin_hash THEN customers.pin_since
                         ELSE excluded.pin_since END,
        pin_source = CASE WHEN excluded.pin_hash = customers.pin_hash THEN customers.pin_source
                          ELSE excluded.pin_source END,
        pin_hash = excluded.pin_hash,
        first_name = excluded.first_name,
        last_name = excluded.last_name,
        email = excluded.email,
        email_problem = excluded.email_problem,
        updated_at = excluded.updated_at
    """
)
_REJECT = sql(
    """
    INSERT INTO rejects (brand, "row", customer_id, reason, detail)
    VALUES (:brand, :row, :customer_id, :reason, :detail)
    ON CONFLICT (brand, "row") DO UPDATE SET customer_id = excluded.customer_id,
        reason = excluded.reason, detail = excluded.detail
    """
)
_UNREACHABLE = sql(
    """
    SELECT customer_id, first_name, last_name, email, email_problem FROM customers
    WHERE brand = :brand AND email_problem IS NOT NULL
    UNION ALL
    SELECT c.customer_id, c.first_name, c.last_name, c.email,
           d.status || ': ' || coalesce(CAST(d.code AS TEXT), '') || ' ' || d.reason
    FROM customers c JOIN deliveries d
      ON d.brand = c.brand AND d.customer_id = c.customer_id
    WHERE c.brand = :brand AND d.permanent = 1 AND d.address = c.email
    ORDER BY 1
    """
)


class Customers(Connected):
    def known_hashes(
        self, brand: str, customer_ids: Sequence[str]
    ) -> dict[str, tuple[str, PinSource]]:
        """customer_id -> (hash, source) for those of `customer_ids` that already hold one."""
        rows = self._among(
            "SELECT customer_id, pin_hash, pin_source FROM customers WHERE brand = :brand",
            {"brand": brand},
            customer_ids,
        )
        return {cid: (h, PinSource(src)) for cid, h, src in rows}

    def sealed_among(self, brand: str, customer_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """customer_id -> (hash, sealed PIN) for those of `customer_ids` with a sealed copy."""
        rows = self._among(
            "SELECT customer_id, pin_hash, pin_sealed FROM customers "
            "WHERE brand = :brand AND pin_sealed IS NOT NULL",
            {"brand": brand},
            customer_ids,
        )
        return {cid: (h, sealed) for cid, h, sealed in rows}

    def record_chunk(
        self, brand: str, customers: Iterable[CustomerRecord], rejects: Iterable[Reject]
    ) -> None:
        """Store a chunk's customers and rejects in one transaction."""
        stamp = schema.now()
        rows = [
            {
                "brand": brand,
                "customer_id": c.customer_id,
                "pin_hash": c.pin_hash,
                "pin_source": c.pin_source.value,
                "stamp": stamp,
                "first_name": c.first_name,
                "last_name": c.last_name,
                "email": c.email,
                "email_problem": c.email_problem,
                "pin_sealed": c.pin_sealed,
            }
            for c in customers
        ]
        bad = [
            {
                "brand": brand,
                "row": r.row,
                "customer_id": r.customer_id,
                "reason": r.reason,
                "detail": r.detail,
            }
            for r in rejects
        ]
        with self.transaction():
            if rows:
                self._write(_UPSERT, rows)
            if bad:
                self._write(_REJECT, bad)

    def forget_rejects(self, brand: str) -> None:
        """Rejects are derived from the export: a new read of it starts them afresh."""
        self._write(sql("DELETE FROM rejects WHERE brand = :brand"), {"brand": brand})

    def rejects(self, brand: str) -> list[Reject]:
        rows = self._rows(
            sql(
                'SELECT "row", customer_id, reason, detail FROM rejects WHERE brand = :brand '
                'ORDER BY "row"'
            ),
            {"brand": brand},
        )
        return [Reject(*r) for r in rows]

    def customer(self, brand: str, customer_id: str) -> CustomerRecord | None:
        rows = self._rows(
            sql(
                "SELECT customer_id, pin_hash, pin_source, first_name, last_name, email, "
                "email_problem, pin_sealed FROM customers "
                "WHERE brand = :brand AND customer_id = :customer_id"
            ),
            {"brand": brand, "customer_id": customer_id},
        )
        return customer_from_row(rows[0]) if rows else None

    def unreachable(self, brand: str) -> Iterator[tuple[str, str, str, str, str]]:
        """Customers the e-mail cannot reach: no usable address, or it failed for good there.

        They need another channel (letter, SMS).
        """
        for row in self._rows(_UNREACHABLE, {"brand": brand}):
            yield row[0], row[1], row[2], row[3], row[4]

    def mark_unreachable(self, brand: str, customer_id: str, problem: str) -> None:
        self._write(
            sql(
                "UPDATE customers SET email_problem = :problem, updated_at = :at "
                "WHERE brand = :brand AND customer_id = :customer_id"
            ),
            {"problem": problem, "at": schema.now(), "brand": brand, "customer_id": customer_id},
        )
