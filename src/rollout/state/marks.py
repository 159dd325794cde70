"""Bounce marks: complaints (never mailed again) and sender problems (a blocker until cleared)."""

from __future__ import annotations

from rollout.state import schema
from rollout.state.base import Connected, sql

_ADD = """
    INSERT INTO bounce_marks (brand, customer_id, mark, campaign, reason, since)
    VALUES (:brand, :customer_id, :mark, :campaign, :reason, :since)
    ON CONFLICT (brand, customer_id, mark) DO {}
"""
# A complaint stays as first recorded; a sender problem is updated.
_ADD_BY_MARK = {
    "complaint": sql(_ADD.format("NOTHING")),
    "sender_problem": sql(
        _ADD.format(
            "UPDATE SET campaign = excluded.campaign, reason = excluded.reason, "
            "since = excluded.since"
        )
    ),
}
# A sender problem counts only while its delivery still holds the failure that raised it
# (any later attempt, or a later bounce, ends it).
_COUNTS = sql(
    """
    SELECT m.mark, m.reason, count(*) FROM bounce_marks m
    LEFT JOIN deliveries d ON d.brand = m.brand AND d.campaign = m.campaign
                           AND d.customer_id = m.customer_id
    WHERE m.brand = :brand AND m.campaign = :campaign
      AND (m.mark = 'complaint' OR (d.status = 'failed' AND m.since >= d.updated_at))
    GROUP BY 1, 2
    """
)


class BounceMarks(Connected):
    def add_mark(self, brand: str, campaign: str, customer_id: str, mark: str, reason: str) -> None:
        """Mark a customer (a complaint stays as first recorded; a sender problem is updated)."""
        self._write(
            _ADD_BY_MARK[mark],
            {
                "brand": brand,
                "customer_id": customer_id,
                "mark": mark,
                "campaign": campaign,
                "reason": reason,
                "since": schema.now(),
            },
        )

    def has_mark(self, brand: str, customer_id: str, mark: str) -> bool:
        rows = self._rows(
            sql(
                "SELECT 1 FROM bounce_marks WHERE brand = :brand AND customer_id = :customer_id "
                "AND mark = :mark"
            ),
            {"brand": brand, "customer_id": customer_id, "mark": mark},
        )
        return bool(rows)

    def clear_marks(self, brand: str, mark: str, customer_id: str | None = None) -> int:
        """Remove a brand's marks of one kind (of one customer, if given); how many went."""
        query = "DELETE FROM bounce_marks WHERE brand = :brand AND mark = :mark"
        args: dict[str, object] = {"brand": brand, "mark": mark}
        if customer_id is not None:
            query += " AND customer_id = :customer_id"
            args["customer_id"] = customer_id
        return self._write(sql(query), args)

    def mark_counts(self, brand: str, campaign: str) -> dict[str, dict[str, int]]:
        """{'complaint': {reason: n}, 'sender_problem': {reason: n}}."""
        counts: dict[str, dict[str, int]] = {"complaint": {}, "sender_problem": {}}
        for mark, reason, count in self._rows(_COUNTS, {"brand": brand, "campaign": campaign}):
            counts[mark][reason] = count
        return counts
