"""Delivery's journal in the state DB: by group commit on PostgreSQL, directly on SQLite.

On SQLite a commit is a local write of the WAL, cheaper than the thread hops below:
`DirectJournal` commits each mark on the event loop (`journal_for` chooses). The rest of this
docstring is about `StoreJournal`, for PostgreSQL, where a commit is a round trip.

Delivery reports each message's fate: 'sending' before every SMTP transaction, the outcome
('sent', 'failed', 'unknown') after it, 'released' when a stop hands a tried message back.
Written one by one, each report would cost a commit (on PostgreSQL a round trip as well), and
that would cap the sending rate. So the reports go through a `GroupCommit`: one thread of its
own, with its own connection to the state DB, runs them; the reports that arrive while a commit
is in progress are committed together, in one transaction, as soon as it ends. A report after a
quiet spell is committed at once, alone: nothing waits for a batch to fill.

- 'sending' is awaited: a worker starts its SMTP transaction only once its mark is committed.
  A crash after the server took the message therefore leaves it 'sending', which the next run
  reports as 'unknown'; it is never mailed again unless someone asks.
- Outcomes and releases are not awaited: they go out with the next commit, and `flush()`, which
  `deliver` calls before it returns (stopped or not), commits whatever is left. A crash (kill,
  power loss) loses at most the outcomes not yet committed: those customers stay 'sending' and
  the next run reports them 'unknown'. That is conservative: nobody is mailed twice, a few are
  left for an operator (`resend --include-unknown`).
- A commit that fails (disk full, DB gone) fails the reports in it and all later ones: the next
  `sending()` or `flush()` raises its error, so delivery stops and the error propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import groupby
from operator import itemgetter
from typing import Any

from rollout.addresses import redact_addresses
from rollout.delivery import Outcome, OutgoingMessage
from rollout.state import StateStore

# One change to commit: its kind ('sending', 'finished', 'released') and its values.
Change = tuple[str, Any]


class GroupCommit:
    """Runs writes on one thread with one connection, each batch of them in one transaction.

    `open_store` is called on that thread; the store is closed there by `close()`. Use from one
    event loop.
    """

    def __init__(
        self,
        open_store: Callable[[], StateStore],
        apply: Callable[[StateStore, list[Change]], None],
        max_batch: int | None = None,
    ) -> None:
        self.open_store, self.apply = open_store, apply
        self.max_batch = max_batch  # 1: no grouping
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="state-writer")
        self.store: StateStore | None = None
        self.queue: list[tuple[Change, asyncio.Future[None] | None]] = []
        self.committing: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        self.commits = 0  # transactions committed (counted on the writer thread)
        self.writes = 0  # writes in them

    async def start(self) -> None:
        try:
            self.store = await self._on_thread(self.open_store)
        except BaseException:
            self.thread.shutdown(wait=False)
            raise

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

    async def close(self) -> None:
        """Flush, then close the connection and end the thread."""
        try:
            await self.flush()
        finally:
            store, self.store = self.store, None
            if store is not None:
                await self._on_thread(store.close)
            self.thread.shutdown(wait=False)

    def _next(self) -> None:
        if self.committing is not None or not self.queue:
            return
        size = len(self.queue) if self.max_batch is None else self.max_batch
        batch, self.queue = self.queue[:size], self.queue[size:]
        writes = [write for write, _ in batch]
        waiting = [committed for _, committed in batch if committed is not None]
        loop = asyncio.get_running_loop()
        self.committing = loop.run_in_executor(self.thread, partial(self._commit, writes))
        self.committing.add_done_callback(partial(self._committed, waiting))

    def _commit(self, writes: list[Change]) -> None:  # on the writer thread
        store = self.store
        if store is None:
            raise RuntimeError("GroupCommit used before start() or after close()")
        with store.transaction():
            self.apply(store, writes)
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

    async def _on_thread(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, call)


class StoreJournal:
    """Delivery's journal in the state DB, via group commit. `async with` opens and closes its
    connection (from `open_store`, on the writer thread); `deliver` flushes it before it returns.
    """

    def __init__(
        self,
        open_store: Callable[[], StateStore],
        brand: str,
        campaign: str,
        max_batch: int | None = None,
    ) -> None:
        self.writer = GroupCommit(open_store, partial(apply_changes, brand, campaign), max_batch)

    async def __aenter__(self) -> StoreJournal:
        await self.writer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.writer.close()

    async def sending(self, message: OutgoingMessage) -> None:
        await self.writer.write_now(sending(message))

    def finished(self, outcome: Outcome) -> None:
        self.writer.write(finished(outcome))

    def released(self, message: OutgoingMessage) -> None:
        self.writer.write(released(message))

    async def flush(self) -> None:
        await self.writer.flush()


class DirectJournal:
    """The journal on SQLite: each mark one statement, committed on its own on the event loop
    (durable in WAL; about 45 µs of CPU a mark). Cheaper there than handing marks to a writer
    thread and back, which pays off only where a commit is a network round trip."""

    def __init__(self, store: StateStore, brand: str, campaign: str) -> None:
        self.apply = partial(apply_changes, brand, campaign, store)

    async def __aenter__(self) -> DirectJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def sending(self, message: OutgoingMessage) -> None:
        self.apply([sending(message)])

    def finished(self, outcome: Outcome) -> None:
        self.apply([finished(outcome)])

    def released(self, message: OutgoingMessage) -> None:
        self.apply([released(message)])

    async def flush(self) -> None:
        return None


def journal_for(store: StateStore, brand: str, campaign: str) -> DirectJournal | StoreJournal:
    """SQLite: marks committed one by one on the loop; PostgreSQL: group commit on a thread and
    a connection of its own (a commit there is a round trip, which must not block the loop)."""
    if store.dialect == "sqlite":
        return DirectJournal(store, brand, campaign)
    return StoreJournal(lambda: StateStore(store.url), brand, campaign)


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


def apply_changes(brand: str, campaign: str, store: StateStore, changes: list[Change]) -> None:
    """The changes of one kind in one call each. A batch names each customer once (a worker
    awaits its 'sending' before anything else can happen to that customer, and nothing follows
    an outcome or a release), so the kinds may go in any order; should a customer come twice,
    runs of one kind keep the order instead."""
    customers = [value if kind == "released" else value[0] for kind, value in changes]
    if len(set(customers)) == len(customers):
        changes = sorted(changes, key=itemgetter(0))  # stable: by kind, else as they came
    for kind, run in groupby(changes, key=itemgetter(0)):
        values = [value for _, value in run]
        if kind == "sending":
            store.mark_sending_many(brand, campaign, values)
        elif kind == "finished":
            store.mark_finished_many(brand, campaign, values)
        else:
            store.release_many(brand, campaign, values)
