"""Claims: which run mails which customer, and taking back what runs that are gone left.

A customer is claimed before being mailed: a 'sending' row with no attempt yet, made in one
transaction with others. Two runs sharing a PostgreSQL DB never claim the same customer
(`FOR UPDATE SKIP LOCKED`, then `ON CONFLICT DO NOTHING`); each claim names its runner (the
claiming connection), so that a later run takes back only the claims of runs that are gone.
On SQLite one run holds the brand, so every claim it finds is a dead run's.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from rollout.model import PinSource, Recipient
from rollout.state import schema
from rollout.state.base import Connected, sql

# Each NOT EXISTS probes the other table's primary key for one candidate customer. `OFFSET 0`
# keeps PostgreSQL from turning them into joins: planned while the campaign had few deliveries
# (a run keeps its plans), a join scanned every delivery of the campaign for each page
# claimed, quadratic in the wave's size (tests/test_journal.py checks the plan in use once the
# campaign has grown). SQLite probes the keys either way.
_NOT_MAILED = """
    c.brand = :brand AND c.email_problem IS NULL AND c.customer_id > :after
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.brand = c.brand
                    AND d.campaign = :campaign AND d.customer_id = c.customer_id
                    LIMIT 1 OFFSET 0)
    AND NOT EXISTS (SELECT 1 FROM bounce_marks m WHERE m.brand = c.brand
                    AND m.customer_id = c.customer_id AND m.mark = 'complaint'
                    LIMIT 1 OFFSET 0)
"""
# The next pending customers after :after, in customer_id order (keyset paging).
_PICK = f"""
    SELECT c.customer_id, c.first_name, c.last_name, c.email, c.pin_source FROM customers c
    WHERE {_NOT_MAILED} ORDER BY c.customer_id LIMIT :limit
"""
_PENDING = sql(_PICK)
_INSERT_CLAIMS = """
    INSERT INTO deliveries (brand, campaign, customer_id, message_id, address, status,
                            attempts, updated_at, runner)
    SELECT :brand, :campaign, customer_id, '', email, 'sending', 0, :at, :runner
    FROM picked WHERE true
    ON CONFLICT DO NOTHING
    RETURNING customer_id
"""
# PostgreSQL: one statement, so one round trip and atomic without BEGIN/COMMIT: lock the
# next pending customers that no other run has locked, claim them, return those claimed.
_CLAIM_ON_POSTGRESQL = sql(
    f"""
    WITH picked AS ({_PICK} FOR UPDATE OF c SKIP LOCKED),
    claimed AS ({_INSERT_CLAIMS})
    SELECT p.customer_id, p.first_name, p.last_name, p.email, p.pin_source
    FROM picked p JOIN claimed USING (customer_id) ORDER BY p.customer_id
    """
)
# SQLite has no INSERT inside WITH: claim, then read the claimed, in one transaction (the
# write lock, taken at BEGIN, keeps every other writer out meanwhile).
_CLAIM_ON_SQLITE = sql(f"WITH picked AS ({_PICK}) {_INSERT_CLAIMS}")
_RECIPIENTS = sql(
    "SELECT customer_id, first_name, last_name, email, pin_source FROM customers "
    "WHERE brand = :brand AND customer_id IN :ids ORDER BY customer_id",
    "ids",
)
# Whose claims may be taken back: on PostgreSQL those of runners whose connection is gone.
# A runner holds an advisory lock named after its backend pid while its connection lives;
# pg_locks shows every session's locks to every role (pg_stat_activity hides other roles'
# details). A reused pid can only make a dead runner look alive: its claims wait, never
# doubled.
_RUNNER_LOCKS = 0x4C5052  # "LPR"
_GONE = {
    "postgresql": f"""AND NOT EXISTS (SELECT 1 FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.classid = {_RUNNER_LOCKS} AND l.granted
          AND l.objid::text = split_part(deliveries.runner, '@', 1))""",
    "sqlite": "",
}
# This connection's runner name (backend pid@start), its advisory lock taken as it is named.
RUNNER_NAME = f"""
    SELECT pg_advisory_lock({_RUNNER_LOCKS}, pg_backend_pid()),
           pid || '@' || extract(epoch FROM backend_start)
    FROM pg_stat_activity WHERE pid = pg_backend_pid()
"""


class Claims(Connected):
    _runner: str | None = None

    @property
    def runner(self) -> str:
        """This connection's name in the claims it makes."""
        if self._runner is None:
            mine = self._rows(sql(RUNNER_NAME))[0][1] if self.dialect == "postgresql" else "local"
            self._runner = str(mine)
        return self._runner

    def pending_recipients(
        self, brand: str, campaign: str, after: str = "", limit: int = 1000
    ) -> list[Recipient]:
        """Reachable customers with no delivery record yet, in customer_id order (keyset paging)."""
        rows = self._rows(
            _PENDING, {"brand": brand, "campaign": campaign, "after": after, "limit": limit}
        )
        return _recipients(rows)

    def iter_pending(
        self, brand: str, campaign: str, limit: int | None = None, page: int = 1000
    ) -> Iterator[Recipient]:
        """All pending recipients (at most `limit`), a page at a time so memory stays flat."""
        pages = self._pages(
            lambda after, n: self.pending_recipients(brand, campaign, after, n), limit, page
        )
        return (recipient for batch in pages for recipient in batch)

    def claim_pending(
        self, brand: str, campaign: str, after: str = "", limit: int = 500
    ) -> list[Recipient]:
        """Claim up to `limit` pending recipients after `after`, atomically."""
        args = {
            "brand": brand,
            "campaign": campaign,
            "after": after,
            "limit": limit,
            "at": schema.now(),
            "runner": self.runner,
        }
        if self.dialect == "postgresql":
            rows = self._rows(_CLAIM_ON_POSTGRESQL, args)
        else:
            with self.transaction():
                ids = [r[0] for r in self._rows(_CLAIM_ON_SQLITE, args)]
                rows = self._rows(_RECIPIENTS, {"brand": brand, "ids": ids}) if ids else []
        return _recipients(rows)

    @contextmanager
    def claims(
        self, brand: str, campaign: str, limit: int | None = None, page: int = 100
    ) -> Iterator[Iterator[Recipient]]:
        """Pending recipients (at most `limit`), claimed a page at a time; on leaving, this
        runner's claims never handed to the server go back to pending.

        The next page is claimed on a thread while this one is used, so whoever iterates (the
        event loop, sending) never waits for the state DB unless it is the slower. Small
        pages: runs sharing the DB split the brand finely, and a run that dies holds few
        claims (the next run takes them back).
        """
        pages = self._pages(lambda a, n: self.claim_pending(brand, campaign, a, n), limit, page)
        ahead = ThreadPoolExecutor(1, thread_name_prefix="claims")
        fetching = [ahead.submit(next, pages, None)]

        def recipients() -> Iterator[Recipient]:
            while (claimed := fetching[0].result()) is not None:
                fetching[0] = ahead.submit(next, pages, None)
                yield from claimed

        try:
            yield recipients()
        finally:
            ahead.shutdown(wait=True)  # a page being claimed is claimed before it goes back
            pages.close()
            self.release_claims(brand, campaign)

    @staticmethod
    def _pages(
        fetch: Callable[[str, int], list[Recipient]], limit: int | None, page: int
    ) -> Generator[list[Recipient], None, None]:
        """Keyset paging: `fetch(after, n)` pages, until one is short or `limit` is reached."""
        after, left = "", limit
        while left is None or left > 0:
            size = page if left is None else min(page, left)
            batch = fetch(after, size)
            if batch:
                yield batch
            if len(batch) < size:
                return
            after = batch[-1].customer_id
            left = None if left is None else left - len(batch)

    def release_claims(self, brand: str, campaign: str) -> int:
        """This runner's claims never handed to the server go back to pending."""
        return self._write(
            sql(
                "DELETE FROM deliveries WHERE brand = :brand AND campaign = :campaign "
                "AND status = 'sending' AND attempts = 0 AND runner = :runner"
            ),
            {"brand": brand, "campaign": campaign, "runner": self.runner},
        )

    def mark_interrupted(self, brand: str, campaign: str) -> int:
        """Take back what runs that are gone left behind: their claims go back to pending, and
        a mail they were sending when they died has an unknown outcome (how many)."""
        gone = _GONE[self.dialect]
        args = {"brand": brand, "campaign": campaign, "at": schema.now()}
        where = "brand = :brand AND campaign = :campaign AND status = 'sending'"
        with self.transaction():
            self._write(sql(f"DELETE FROM deliveries WHERE {where} AND attempts = 0 {gone}"), args)
            return self._write(
                sql(
                    f"UPDATE deliveries SET status = 'unknown', updated_at = :at "
                    f"WHERE {where} {gone}"
                ),
                args,
            )


def _recipients(rows: Sequence[Sequence[Any]]) -> list[Recipient]:
    """Rows of (customer_id, first_name, last_name, email, pin_source) as recipients."""
    return [Recipient(r[0], r[1], r[2], r[3], PinSource(r[4])) for r in rows]
