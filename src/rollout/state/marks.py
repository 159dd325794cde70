"""Bounce marks: complaints (never mailed again) and sender problems (a blocker until cleared)."""

from __future__ import annotations

from rollout.state import schema
from rollout.state.base import Connected


class BounceMarks(Connected):
    def add_mark(self, brand: str, campaign: str, customer_id: str, mark: str, reason: str) -> None:
        """Mark a customer (a complaint stays as first recorded; a sender problem is updated)."""
        verb = "INSERT OR IGNORE" if mark == "complaint" else "INSERT OR REPLACE"
        self.db.execute(
            f"{verb} INTO bounce_marks VALUES (?, ?, ?, ?, ?, ?)",
            (brand, customer_id, mark, campaign, reason, schema.now()),
        )

    def has_mark(self, brand: str, customer_id: str, mark: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM bounce_marks WHERE brand = ? AND customer_id = ? AND mark = ?",
            (brand, customer_id, mark),
        ).fetchone()
        return row is not None

    def clear_marks(self, brand: str, mark: str, customer_id: str | None = None) -> int:
        """Remove a brand's marks of one kind (of one customer, if given); how many went."""
        query = "DELETE FROM bounce_marks WHERE brand = ? AND mark = ?"
        args: list[object] = [brand, mark]
        if customer_id is not None:
            query += " AND customer_id = ?"
            args.append(customer_id)
        return self.db.execute(query, args).rowcount

    def mark_counts(self, brand: str, campaign: str) -> dict[str, dict[str, int]]:
        """{'complaint': {reason: n}, 'sender_problem': {reason: n}}; a sender problem counts
        only while its delivery still holds the failure that raised it (any later attempt,
        or a later bounce, ends it)."""
        rows = self.db.execute(
            """
            SELECT m.mark, m.reason, count(*) FROM bounce_marks m
            LEFT JOIN deliveries d ON d.brand = m.brand AND d.campaign = m.campaign
                                   AND d.customer_id = m.customer_id
            WHERE m.brand = ? AND m.campaign = ?
              AND (m.mark = 'complaint' OR (d.status = 'failed' AND m.since >= d.updated_at))
            GROUP BY 1, 2
            """,
            (brand, campaign),
        )
        counts: dict[str, dict[str, int]] = {"complaint": {}, "sender_problem": {}}
        for mark, reason, count in rows:
            counts[mark][reason] = count
        return counts
