"""Read-only counts: what status, reports and the forecast show."""

from __future__ import annotations

from datetime import datetime

from rollout.state.base import Connected


class Counts(Connected):
    def counts(self, brand: str, campaign: str) -> dict[str, dict[str, int]]:
        """Everything `status` shows, as {group: {key: count}}."""
        q = self.db.execute
        return {
            "pins": dict(
                q("SELECT pin_source, count(*) FROM customers WHERE brand = ? GROUP BY 1", (brand,))
            ),
            "rejected": dict(
                q("SELECT reason, count(*) FROM rejects WHERE brand = ? GROUP BY 1", (brand,))
            ),
            "unreachable": dict(
                q(
                    "SELECT email_problem, count(*) FROM customers "
                    "WHERE brand = ? AND email_problem IS NOT NULL GROUP BY 1",
                    (brand,),
                )
            ),
            "deliveries": dict(
                q(
                    "SELECT status, count(*) FROM deliveries WHERE brand = ? AND campaign = ? "
                    "GROUP BY 1",
                    (brand, campaign),
                )
            ),
            "failed": dict(
                q(
                    "SELECT coalesce(code, 0) || ' ' || reason, count(*) FROM deliveries "
                    "WHERE brand = ? AND campaign = ? AND status = 'failed' GROUP BY 1",
                    (brand, campaign),
                )
            ),
        }

    def pending_count(self, brand: str, campaign: str) -> int:
        row = self.db.execute(
            """
            SELECT count(*) FROM customers c
            WHERE c.brand = ? AND c.email_problem IS NULL
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.brand = c.brand
                              AND d.campaign = ? AND d.customer_id = c.customer_id)
              AND NOT EXISTS (SELECT 1 FROM bounce_marks m WHERE m.brand = c.brand
                              AND m.customer_id = c.customer_id AND m.mark = 'complaint')
            """,
            (brand, campaign),
        ).fetchone()
        return int(row[0])

    def backlog_counts(self, brand: str, campaign: str) -> dict[str, int]:
        """Deliveries not done yet, by what comes next (for `rollout plan`).

        retry: a soft failure, or a permanent one at an address that has changed since (resend
        mails them); failed, bounced: for good at the current address; unknown: a run died
        mid-send ('sending' too: the next run marks it unknown).
        """
        row = self.db.execute(
            """
            SELECT
              coalesce(sum(d.status IN ('unknown', 'sending')), 0),
              coalesce(sum(c.email_problem IS NULL AND d.status IN ('failed', 'bounced')
                           AND (d.permanent = 0 OR d.address <> c.email)), 0),
              coalesce(sum(c.email_problem IS NULL AND d.status = 'failed'
                           AND d.permanent = 1 AND d.address = c.email), 0),
              coalesce(sum(c.email_problem IS NULL AND d.status = 'bounced'
                           AND d.permanent = 1 AND d.address = c.email), 0)
            FROM deliveries d JOIN customers c
              ON c.brand = d.brand AND c.customer_id = d.customer_id
            WHERE d.brand = ? AND d.campaign = ?
            """,
            (brand, campaign),
        ).fetchone()
        return dict(zip(("unknown", "retry", "failed", "bounced"), map(int, row), strict=True))

    def sent_per_second(
        self, brand: str, campaign: str, limit: int = 10_000
    ) -> list[tuple[datetime, int]]:
        """(second, mails recorded sent in it) for the latest `limit` seconds with sends."""
        rows = self.db.execute(
            "SELECT updated_at, count(*) FROM deliveries "
            "WHERE brand = ? AND campaign = ? AND status = 'sent' "
            "GROUP BY updated_at ORDER BY updated_at DESC LIMIT ?",
            (brand, campaign, limit),
        )
        return [(datetime.fromisoformat(at), int(n)) for at, n in rows]
