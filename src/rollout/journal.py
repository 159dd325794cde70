"""Delivery's journal in the state DB: by group commit on PostgreSQL, directly on SQLite.

On SQLite a commit is a local write of the WAL, a few tens of µs: `DirectJournal` commits each
mark on the event loop (`journal_for` chooses). The rest of this docstring is about
`GroupJournal`, for PostgreSQL, where a commit is a round trip to a server.

Delivery reports each message's fate: 'sending' as every SMTP transaction begins, the outcome
('sent', 'failed', 'unknown') after it, 'released' when a stop hands a tried message back.
Written one by one, each report would cost a round trip and a commit, and that would cap the
sending rate. So the reports go through a `GroupCommit`: the reports that arrive while a batch
is being written are written together, as the next batch, as soon as it ends; a report after a
quiet spell is written at once, alone: nothing waits for a batch to fill. A batch is one
statement on the event loop (`rollout.state.pg_journal`: psycopg's async connection, one round
trip, one commit), so the loop goes on with SMTP meanwhile.

- 'sending' is awaited: the transport sends DATA only once the mark is committed (its round
  trip overlaps MAIL FROM and RCPT TO). A crash after the server took the message therefore
  leaves it 'sending', which the next run reports as 'unknown'; it is never mailed again
  unless someone asks.
- Outcomes and releases are not awaited: they go out with the next batch, and `flush()`, which
  `deliver` calls before it returns (stopped or not), commits whatever is left. A crash (kill,
  power loss) loses at most the outcomes not yet committed: those customers stay 'sending' and
  the next run reports them 'unknown'. That is conservative: nobody is mailed twice, a few are
  left for an operator (`resend --include-unknown`).
- A batch that fails (disk full, DB gone) fails the reports in it and all later ones: the next
  `sending()` or `flush()` raises its error, so delivery stops and the error propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import groupby
from operator import itemgetter
from typing import Any

from rollout.addresses import redact_addresses
from rollout.delivery import Outcome, OutgoingMessage
from rollout.state import StateStore
from rollout.state.pg_journal import PostgresJournalWriter

# One change to commit: its kind ('sending', 'finished', 'released') and its values.
Change = tuple[str, Any]


class GroupCommit:
    """Writes batches of changes, one batch at a time, on the event loop it is used from.

    `commit(changes)` writes one batch (one transaction); while it runs, new changes queue up
    for the next.
    """

    def __init__(
        self,
        commit: Callable[[list[Change]], Awaitable[None]],
        max_batch: int | None = None,
    ) -> None:
        self.commit = commit
        self.max_batch = max_batch  # 1: no grouping
        self.queue: list[tuple[Change, asyncio.Future[None] | None]] = []
        self.committing: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        self.commits = 0  # batches committed
        self.writes = 0  # changes in them

    def write(self, write: Change) -> None:
        """Commit `write` soon, with whatever else comes; never raises (see `flush`)."""
        if self.error is None:
            self.queue.append((write, None))
            # Not at once: a worker that reports an outcome usually marks its next message
            # 'sending' before the loop comes round again, and both go in one commit.
            asyncio.get_running_loop().call_soon(self._next)

    async def write_now(self, write: Change) -> None:
        """Commit `write`, with whatever else comes, and return once it is committed."""
        if self.error is not None:
            raise self.error
        committed = asyncio.get_running_loop().create_future()
        self.queue.append((write, committed))
        self._next()
        await committed

    async def flush(self) -> None:
        """Return once every write so far is committed; raise the error of one that failed."""
        while True:
            self._next()
            if self.committing is None:
                break
            await asyncio.wait({self.committing})  # not `await`: a cancelled flush leaves it be
        if self.error is not None:
            raise self.error

    def _next(self) -> None:
        if self.committing is not None or not self.queue or self.error is not None:
            return
        size = len(self.queue) if self.max_batch is None else self.max_batch
        batch, self.queue = self.queue[:size], self.queue[size:]
        writes = [write for write, _ in batch]
        waiting = [committed for _, committed in batch if committed is not None]
        self.committing = asyncio.ensure_future(self._commit(writes))
        self.committing.add_done_callback(partial(self._committed, waiting))

    async def _commit(self, writes: list[Change]) -> None:
        await self.commit(writes)
        self.commits += 1
        self.writes += len(writes)

    def _committed(self, waiting: list[asyncio.Future[None]], done: asyncio.Future[None]) -> None:
        self.committing = None
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        if error is not None and self.error is None:
            self.error = error
        for committed in waiting:
            if committed.done():  # its waiter was cancelled
                continue
            if error is None:
                committed.set_result(None)
            else:
                committed.set_exception(error)
        if self.error is None:
            self._next()
            return
        for _, awaited in self.queue:  # never to be committed
            if awaited is not None and not awaited.done():
                awaited.set_exception(self.error)
        self.queue.clear()


class GroupJournal:
    """Delivery's journal by group commit. `async with` opens and closes the writer's
    connection; `deliver` flushes the journal before it returns."""

    def __init__(self, writer: PostgresJournalWriter, max_batch: int | None = None) -> None:
        self.writer = writer
        self.batches = GroupCommit(lambda changes: writer.write(runs(changes)), max_batch)

    async def __aenter__(self) -> GroupJournal:
        await self.writer.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.batches.flush()
        finally:
            await self.writer.close()

    async def sending(self, message: OutgoingMessage) -> None:
        await self.batches.write_now(sending(message))

    def finished(self, outcome: Outcome) -> None:
        self.batches.write(finished(outcome))

    def released(self, message: OutgoingMessage) -> None:
        self.batches.write(released(message))

    async def flush(self) -> None:
        await self.batches.flush()


class DirectJournal:
    """The journal on SQLite: each mark one statement, committed on its own on the event loop
    (durable in WAL; about 45 µs of CPU a mark). Batching pays off only where a commit is a
    network round trip; SQLite has no async driver to batch on the loop with.

    As with group commit, an outcome or release that cannot be recorded does not raise where
    it is reported (delivery may be halting): it and every later one are dropped, and the next
    `sending()` or `flush()` raises its error.
    """

    def __init__(self, store: StateStore, brand: str, campaign: str) -> None:
        self.apply = partial(apply_changes, brand, campaign, store)
        self.error: Exception | None = None

    async def __aenter__(self) -> DirectJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def sending(self, message: OutgoingMessage) -> None:
        await self.flush()
        self.apply([sending(message)])

    def finished(self, outcome: Outcome) -> None:
        self._record(finished(outcome))

    def released(self, message: OutgoingMessage) -> None:
        self._record(released(message))

    def _record(self, change: Change) -> None:
        if self.error is None:
            try:
                self.apply([change])
            except Exception as exc:
                self.error = exc

    async def flush(self) -> None:
        if self.error is not None:
            raise self.error


def journal_for(store: StateStore, brand: str, campaign: str) -> DirectJournal | GroupJournal:
    """SQLite: marks committed one by one on the loop; PostgreSQL: group commit on a
    connection of its own, asynchronous (a commit there is a round trip, which must not block
    the loop)."""
    if store.dialect == "sqlite":
        return DirectJournal(store, brand, campaign)
    return GroupJournal(PostgresJournalWriter(store.url, brand, campaign))


# --- the changes, as both journals record them ---------------------------------------------


def sending(message: OutgoingMessage) -> Change:
    m = message
    return "sending", (m.customer_id, m.message_id, m.recipient)


def finished(outcome: Outcome) -> Change:
    o = outcome
    reason = redact_addresses(o.reason)  # the address is in the customer's own row
    return "finished", (o.customer_id, o.status, o.code, reason, o.permanent)


def released(message: OutgoingMessage) -> Change:
    return "released", message.customer_id


def runs(changes: list[Change]) -> list[tuple[str, list[Any]]]:
    """The changes as runs of one kind each, to be written one run per statement.

    A batch names each customer once (a worker awaits its 'sending' before anything else can
    happen to that customer, and nothing follows an outcome or a release), so the kinds may go
    in any order: one run per kind. Should a customer come twice, runs keep the order instead.
    """
    customers = [value if kind == "released" else value[0] for kind, value in changes]
    if len(set(customers)) == len(customers):
        changes = sorted(changes, key=itemgetter(0))  # stable: by kind, else as they came
    return [(kind, [value for _, value in run]) for kind, run in groupby(changes, itemgetter(0))]


def apply_changes(brand: str, campaign: str, store: StateStore, changes: list[Change]) -> None:
    """The changes through the store, a run of one kind in one call."""
    for kind, values in runs(changes):
        store.record_changes(brand, campaign, kind, values)
