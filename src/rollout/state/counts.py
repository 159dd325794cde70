"""Read-only counts: what status, reports and the forecast show."""

from __future__ import annotations

from datetime import datetime

from rollout.state.base import Connected, sql

_BY_GROUP = {
    "pins": "SELECT pin_source, count(*) FROM customers WHERE brand = :brand GROUP BY 1",
    "rejected": "SELECT reason, count(*) FROM rejects WHERE brand = :brand GROUP BY 1",
    "unreachable": "SELECT email_problem, count(*) FROM customers "
    "WHERE brand = :brand AND email_problem IS NOT NULL GROUP BY 1",
    # 'claimed': a run took them but has not tried them yet (it is sending now, or it died
    # and the next run takes them back); 'sending': tried, no answer recorded yet.
    "deliveries": "SELECT CASE WHEN status = 'sending' AND attempts = 0 THEN 'claimed' "
    "ELSE status END, count(*) FROM deliveries "
    "WHERE brand = :brand AND campaign = :campaign GROUP BY 1",
    "failed": "SELECT CAST(coalesce(code, 0) AS TEXT) || ' ' || reason, count(*) "
    "FROM deliveries WHERE brand = :brand AND campaign = :campaign AND status = 'failed' "
    "GROUP BY 1",
}
_PENDING = sql(
    """
    SELECT count(*) FROM customers c
    WHERE c.brand = :brand AND c.email_problem IS NULL
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.brand = c.brand
                      AND d.campaign = :campaign AND d.customer_id = c.customer_id)
      AND NOT EXISTS (SELECT 1 FROM bounce_marks m WHERE m.brand = c.brand
                      AND m.customer_id = c.customer_id AND m.mark = 'complaint')
    """
)
# retry: a soft failure, or a permanent one at an address that has changed since (resend
# mails them); failed, bounced: for good at the current address; unknown: a run died
# mid-send ('sending' too: the next run marks it unknown); claimed: not tried yet, mailed by
# the run that holds them or, if it is gone, by the next.
_BACKLOG = sql(
    """
    SELECT
      count(*) FILTER (WHERE d.status = 'unknown' OR (d.status = 'sending' AND d.attempts > 0)),
      count(*) FILTER (WHERE c.email_problem IS NULL AND d.status IN ('failed', 'bounced')
                       AND (d.permanent = 0 OR d.address <> c.email)),
      count(*) FILTER (WHERE c.email_problem IS NULL AND d.status = 'failed'
                       AND d.permanent = 1 AND d.address = c.email),
      count(*) FILTER (WHERE c.email_problem IS NULL AND d.status = 'bounced'
                       AND d.permanent = 1 AND d.address = c.email),
      count(*) FILTER (WHERE d.status = 'sending' AND d.attempts = 0)
    FROM deliveries d JOIN customers c
      ON c.brand = d.brand AND c.customer_id = d.customer_id
    WHERE d.brand = :brand AND d.campaign = :campaign
    """
)
_SENT_PER_SECOND = sql(
    "SELECT updated_at, count(*) FROM deliveries "
    "WHERE brand = :brand AND campaign = :campaign AND status = 'sent' "
    "GROUP BY updated_at ORDER BY updated_at DESC LIMIT :limit"
)


class Counts(Connected):
    def counts(self, brand: str, campaign: str) -> dict[str, dict[str, int]]:
        """Everything `status` shows, as {group: {key: count}}."""
        args = {"brand": brand, "campaign": campaign}
        return {
            group: {str(key): int(n) for key, n in self._rows(sql(query), args)}
            for group, query in _BY_GROUP.items()
        }

    def pending_count(self, brand: str, campaign: str) -> int:
        return int(self._rows(_PENDING, {"brand": brand, "campaign": campaign})[0][0])

    def backlog_counts(self, brand: str, campaign: str) -> dict[str, int]:
        """Deliveries not done yet, by what comes next (for `rollout plan`)."""
        row = self._rows(_BACKLOG, {"brand": brand, "campaign": campaign})[0]
        kinds = ("unknown", "retry", "failed", "bounced", "claimed")
        return dict(zip(kinds, map(int, row), strict=True))

    def sent_per_second(
        self, brand: str, campaign: str, limit: int = 10_000
    ) -> list[tuple[datetime, int]]:
        """(second, mails recorded sent in it) for the latest `limit` seconds with sends."""
        rows = self._rows(_SENT_PER_SECOND, {"brand": brand, "campaign": campaign, "limit": limit})
        return [(datetime.fromisoformat(at), int(n)) for at, n in rows]
