"""The delivery journal's writes on PostgreSQL: on the event loop, a batch in one round trip.

Delivery marks each message 'sending' before the server can take it and records its outcome
after; `rollout.journal` groups those marks into batches. Here a batch is written on psycopg's
async connection, so the loop never blocks on a round trip and no thread hand-off is paid
for. The statements are the store's own (`rollout.state.deliveries.CHANGES`: one per customer,
keyed by the primary key, so always an index probe whatever the planner's statistics say),
sent in pipeline mode: BEGIN, every change of the batch and COMMIT go out together, one round
trip and one commit (one WAL flush) for the batch. psycopg prepares each statement once it has
seen it a few times, so the server parses nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from rollout.state.connect import postgresql_params
from rollout.state.deliveries import CHANGES, RUNNER_NAME, change_params

# The store's statements as psycopg takes them (%(name)s parameters).
_DIALECT = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]
_STATEMENTS = {kind: str(clause.compile(dialect=_DIALECT)) for kind, clause in CHANGES.items()}


class PostgresJournalWriter:
    """One async connection to the state DB at `url`, writing one brand's campaign's marks.

    Its 'sending' rows name this connection as their runner (its advisory lock, held while it
    lives, tells other runs it is alive; see `rollout.state.deliveries`).
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
        """Runs of one kind each ('sending', 'finished', 'released'), in order, in one
        transaction."""
        conn = self.conn
        if conn is None:
            raise RuntimeError("PostgresJournalWriter used before open() or after close()")
        async with conn.pipeline(), conn.transaction(), conn.cursor() as cursor:
            for kind, values in runs:
                params = change_params(kind, self.brand, self.campaign, values, self.runner)
                await cursor.executemany(cast(Any, _STATEMENTS[kind]), params)
