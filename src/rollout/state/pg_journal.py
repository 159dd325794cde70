"""The delivery journal's writes on PostgreSQL: on the event loop, a batch in one statement.

Delivery marks each message 'sending' before the server can take it and records its outcome
after; `rollout.journal` groups those marks into batches. Here a batch is written on psycopg's
async connection, so the loop never blocks on a round trip and no thread hand-off is paid for.

A batch is one statement, one round trip and one commit (one WAL flush), whatever its size:
each kind of change is a data-modifying CTE whose values come as arrays (`unnest`), so the
client adapts a few lists instead of a row of parameters per change (a third of the CPU of
running the store's own statements row by row). They make the same changes as
`Deliveries.record_changes` (SQLite's journal runs that); tests/test_journal.py checks both
backends against the same outcomes.

Every row is found by its key, whatever the planner knows. A run plans its statements while
the campaign has few deliveries and keeps those plans while it grows to millions; a plain join
of the arrays with `deliveries` was then planned as a scan of all the campaign's rows per
batch, quadratic in the wave. So the 'sending' rows go through INSERT ... ON CONFLICT (a key
probe per row by construction), and the rows to finish or release are looked up one by one
in a LATERAL subquery, locked there (FOR UPDATE, which also keeps the planner from turning the
subquery into a join), then updated or deleted by their tuple id. tests/test_journal.py checks
the plans in use once the campaign has grown.

PostgreSQL plans this statement anew for each batch (its custom plans, knowing the arrays'
sizes, look cheaper to it than a generic one): about 0.2 ms of server CPU a batch. Do not
force a generic plan (`plan_cache_mode`): one made while the campaign is small updated the
finished rows through a hash join over a scan of all deliveries, and a run keeps its plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg

from rollout.state.claims import RUNNER_NAME
from rollout.state.connect import postgresql_params
from rollout.state.schema import now

_KEY = "x.brand = %(brand)s AND x.campaign = %(campaign)s AND x.customer_id = v.customer_id"
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
_TO_FINISH = f"""
    SELECT t.tid, v.status, v.code, v.reason, v.permanent
    FROM unnest(%(finished)s::text[], %(statuses)s::text[], %(codes)s::int[],
                %(reasons)s::text[], %(permanent)s::int[])
         AS v(customer_id, status, code, reason, permanent)
    CROSS JOIN LATERAL (SELECT x.ctid AS tid FROM deliveries x WHERE {_KEY}
                        FOR UPDATE) t
"""
_FINISHED = """
    UPDATE deliveries d SET status = f.status, code = f.code, reason = f.reason,
                            permanent = f.permanent, updated_at = %(at)s
    FROM to_finish f WHERE d.ctid = f.tid
"""
_TO_RELEASE = f"""
    SELECT t.tid FROM unnest(%(released)s::text[]) AS v(customer_id)
    CROSS JOIN LATERAL (SELECT x.ctid AS tid FROM deliveries x
                        WHERE {_KEY} AND x.status = 'sending' FOR UPDATE) t
"""
_RELEASED = "DELETE FROM deliveries d USING to_release r WHERE d.ctid = r.tid"
# Data-modifying CTEs see one snapshot, so each must touch rows the others do not: a batch
# names each customer once (see rollout.journal.runs; `write` handles the exception).
BATCH = f"""
    WITH sending AS ({_SENDING}),
         to_finish AS ({_TO_FINISH}), finished AS ({_FINISHED}),
         to_release AS ({_TO_RELEASE}), released AS ({_RELEASED})
    SELECT 1
"""


class PostgresJournalWriter:
    """One async connection to the state DB at `url`, writing one brand's campaign's marks.

    Its 'sending' rows name this connection as their runner (its advisory lock, held while it
    lives, tells other runs it is alive; see `rollout.state.claims`).
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
        if len(set(kinds)) == len(kinds):  # each customer once: one statement
            await conn.execute(cast(Any, BATCH), self.params(runs))
            return
        async with conn.transaction():  # a customer came twice: its changes in order
            for run in runs:
                await conn.execute(cast(Any, BATCH), self.params([run]))

    def params(self, runs: Sequence[tuple[str, list[Any]]]) -> dict[str, Any]:
        """BATCH's parameters: each kind's values as columns (arrays), empty if the runs hold
        none of that kind."""
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
