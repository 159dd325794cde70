"""The delivery journal's writes on PostgreSQL: on the event loop, a batch in a few statements.

Delivery marks each message 'sending' before its SMTP transaction and records its outcome
after; `rollout.journal` groups those marks into batches. Here a batch is written on psycopg's
async connection, so the loop never blocks on a round trip and no thread hand-off is paid for,
and the whole batch is one statement whatever its size: each kind of change a data-modifying
CTE, its values as arrays (`unnest`), so the server parses nothing new (psycopg prepares a
statement it sees repeatedly) and the client adapts a few lists instead of a dict per row.
The changes are those of `Deliveries.mark_sending_many`, `mark_finished_many` and
`release_many` (SQLite's journal uses those); tests/test_journal.py checks both backends
against the same outcomes.

A batch is one statement: one round trip and one commit (one WAL flush) for all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg

from rollout.state.connect import postgresql_params
from rollout.state.deliveries import RUNNER_NAME
from rollout.state.schema import now

_SENDING = """
    INSERT INTO deliveries (brand, campaign, customer_id, message_id, address,
                            status, attempts, updated_at, runner)
    SELECT %(brand)s, %(campaign)s, v.customer_id, v.message_id, v.address,
           'sending', 1, %(at)s, %(runner)s
    FROM unnest(%(sending)s::text[], %(message_ids)s::text[], %(addresses)s::text[])
         AS v(customer_id, message_id, address)
    ON CONFLICT (brand, campaign, customer_id) DO UPDATE SET
        status = 'sending', message_id = excluded.message_id, address = excluded.address,
        attempts = deliveries.attempts + 1, updated_at = excluded.updated_at,
        runner = excluded.runner
"""
_FINISHED = """
    UPDATE deliveries d SET status = v.status, code = v.code, reason = v.reason,
                            permanent = v.permanent, updated_at = %(at)s
    FROM unnest(%(finished)s::text[], %(statuses)s::text[], %(codes)s::int[],
                %(reasons)s::text[], %(permanent)s::int[])
         AS v(customer_id, status, code, reason, permanent)
    WHERE d.brand = %(brand)s AND d.campaign = %(campaign)s AND d.customer_id = v.customer_id
"""
_RELEASED = """
    DELETE FROM deliveries WHERE brand = %(brand)s AND campaign = %(campaign)s
    AND customer_id = ANY(%(released)s::text[]) AND status = 'sending'
"""
_STATEMENTS = {"sending": _SENDING, "finished": _FINISHED, "released": _RELEASED}
# A batch with each kind once, as one statement: one round trip, atomic without BEGIN and
# COMMIT. Data-modifying CTEs see one snapshot, so each must touch rows the others do not:
# a batch names each customer once (see rollout.journal.runs).
_BATCH = f"""
    WITH sending AS ({_SENDING}), finished AS ({_FINISHED}), released AS ({_RELEASED})
    SELECT 1
"""


class PostgresJournalWriter:
    """One async connection to the state DB at `url`, writing one brand's campaign's marks.

    Its claims on 'sending' rows name this connection as their runner (its advisory lock,
    held while it lives, tells other runs it is alive; see `rollout.state.deliveries`).
    """

    def __init__(self, url: str, brand: str, campaign: str) -> None:
        self.url, self.brand, self.campaign = url, brand, campaign
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.runner = ""

    async def open(self) -> None:
        self.conn = await psycopg.AsyncConnection.connect(
            **postgresql_params(self.url), autocommit=True
        )
        cursor = await self.conn.execute(cast(Any, RUNNER_NAME))
        row = await cursor.fetchone()
        assert row is not None  # pg_stat_activity always has our own backend
        self.runner = str(row[1])

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.close()

    async def write(self, runs: Sequence[tuple[str, list[Any]]]) -> None:
        """Runs of one kind each ('sending', 'finished', 'released'), in one transaction."""
        conn = self.conn
        if conn is None:
            raise RuntimeError("PostgresJournalWriter used before open() or after close()")
        kinds = [kind for kind, _ in runs]
        if len(set(kinds)) == len(kinds):
            await conn.execute(_BATCH, self._args(runs))
            return
        async with conn.transaction():  # a customer came twice: its changes in order
            for kind, values in runs:
                await conn.execute(_STATEMENTS[kind], self._args([(kind, values)]))

    def _args(self, runs: Sequence[tuple[str, list[Any]]]) -> dict[str, Any]:
        """The statements' parameters: each kind's values as columns (arrays), empty if the
        batch has none of that kind."""
        by_kind = dict(runs)
        sending, message_ids, addresses = _columns(by_kind.get("sending", []), 3)
        finished, statuses, codes, reasons, permanent = _columns(by_kind.get("finished", []), 5)
        return {
            "brand": self.brand,
            "campaign": self.campaign,
            "at": now(),
            "runner": self.runner,
            "sending": sending,
            "message_ids": message_ids,
            "addresses": addresses,
            "finished": finished,
            "statuses": statuses,
            "codes": codes,
            "reasons": reasons,
            "permanent": [int(p) for p in permanent],
            "released": list(by_kind.get("released", [])),
        }


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows of `width` values as `width` columns (the arrays of one statement)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
