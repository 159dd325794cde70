"""The delivery loop: one producer, a worker per connection, retries on timers, halting."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass

from rollout.delivery.model import (
    DeliverySettings,
    DeliveryStats,
    Journal,
    Outcome,
    OutgoingMessage,
)
from rollout.delivery.pacing import RateLimiter, backoff_delay
from rollout.model import DeliveryStatus
from rollout.transports import (
    CampaignBlocked,
    Connection,
    ConnectionFailed,
    DeliveryError,
    PermanentError,
    Reply,
    TransientError,
    Transport,
)

log = logging.getLogger("rollout.delivery")


@dataclass(eq=False)  # identity hash: jobs are keys of the retry timers
class _Job:
    message: OutgoingMessage
    attempts: int = 0


class Run:
    def __init__(
        self,
        transport: Transport,
        journal: Journal,
        settings: DeliverySettings,
        progress: Callable[[Outcome], None] | None,
    ) -> None:
        self.transport = transport
        self.journal = journal
        self.settings = settings
        self.progress = progress
        rate = settings.rate_per_second
        self.limiter = RateLimiter(rate, settings.burst) if rate else None
        self.stats = DeliveryStats()
        # Unbounded, yet never longer than the window: the producer acquires a window slot
        # per message, so retry timers can always put a message back without blocking.
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.window = asyncio.Semaphore(settings.max_in_flight)
        self.timers: dict[_Job, asyncio.TimerHandle] = {}
        self.outstanding = 0  # taken from the input, not yet accounted for
        self.input_done = False
        self.stopping = False
        self.stopped = asyncio.Event()
        self.live_workers = settings.connections
        self.producer: asyncio.Task[None] | None = None
        self.stop: asyncio.Event | None = None

    # --- the whole run ---

    async def execute(
        self,
        messages: Iterable[OutgoingMessage] | AsyncIterable[OutgoingMessage],
        stop: asyncio.Event | None,
    ) -> DeliveryStats:
        started = time.monotonic()
        self.stop = stop
        workers = [
            asyncio.create_task(self._work(self.transport.connection()))
            for _ in range(self.settings.connections)
        ]
        self.producer = asyncio.create_task(self._produce(messages))
        helpers = [self.producer]
        if stop is not None:
            helpers.append(asyncio.create_task(self._watch(stop)))
        for task in (*workers, *helpers):
            task.add_done_callback(self._on_task_done)
        try:
            await asyncio.wait(workers)
        except asyncio.CancelledError:
            # Python 3.11's wait_for (inside aiosmtplib) can swallow a cancellation that meets
            # a server reply, and such a worker would go on; halting makes every worker end
            # after its current transaction however the cancellation fared.
            self._halt(None)
            for worker in workers:
                worker.cancel()
            await asyncio.wait(workers)
            raise
        finally:
            self._halt(None)  # no-op after a normal end
            for helper in helpers:
                helper.cancel()
            await asyncio.wait(helpers)
        errors = [t.exception() for t in workers if not t.cancelled()]
        error = next((e for e in (*errors, self._producer_error()) if e is not None), None)
        try:
            await self.journal.flush()  # stopped or not: every outcome recorded
        except Exception as exc:
            error = error or exc
        self.stats.elapsed = time.monotonic() - started
        if error is not None:
            raise error
        return self.stats

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._halt(None)

    def _producer_error(self) -> BaseException | None:
        producer = self.producer
        if producer is None or not producer.done() or producer.cancelled():
            return None
        return producer.exception()

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        log.info("delivery stop requested")
        self._halt(None)

    def _halt(self, blocked: CampaignBlocked | None) -> None:
        """Stop taking input and starting transactions; account for everything not finished."""
        if self.stopping:
            return
        self.stopping = True
        self.stats.blocked = blocked
        if blocked is not None:
            log.warning("delivery via %s blocked: %s", self.transport.description, blocked)
        self.stopped.set()
        if self.producer is not None:
            self.producer.cancel()
        for job, timer in self.timers.items():
            timer.cancel()
            self._leave(job)
        self.timers.clear()
        while not self.queue.empty():
            job_or_end = self.queue.get_nowait()
            if job_or_end is not None:
                self._leave(job_or_end)
        self._end_workers()

    def _end_workers(self) -> None:
        for _ in range(self.settings.connections):
            self.queue.put_nowait(None)

    # --- input ---

    async def _produce(
        self, messages: Iterable[OutgoingMessage] | AsyncIterable[OutgoingMessage]
    ) -> None:
        if isinstance(messages, AsyncIterable):
            async for message in messages:
                await self._admit(message)
        else:
            for message in messages:
                await self._admit(message)
        self.input_done = True
        if self.outstanding == 0:
            self._end_workers()

    async def _admit(self, message: OutgoingMessage) -> None:
        try:
            await self.window.acquire()
        except asyncio.CancelledError:
            self.stats.not_attempted += 1  # taken from the input already
            raise
        self.outstanding += 1
        self.queue.put_nowait(_Job(message))
        await asyncio.sleep(0)  # the input may compose on this loop: let the workers run

    # --- workers ---

    async def _work(self, connection: Connection) -> None:
        failures = 0  # connects failed in a row
        try:
            while (job := await self._next_job(connection)) is not None:
                if self.stopping:
                    self._leave(job)
                    continue
                try:
                    await connection.open()
                except ConnectionFailed as exc:
                    failures += 1
                    self._requeue(job)  # no transaction began: not an attempt
                    if failures >= self.settings.connect_attempts:
                        self._retire(exc)
                        return
                    await self._pause(self._backoff(failures))
                    continue
                except CampaignBlocked as exc:
                    self._halt(exc)
                    self._leave(job)
                    return
                failures = 0
                await self._attempt(connection, job)
        finally:
            await connection.close()

    async def _next_job(self, connection: Connection) -> _Job | None:
        if not self.queue.empty():
            return self.queue.get_nowait()
        getter = asyncio.ensure_future(self.queue.get())
        try:
            done, _ = await asyncio.wait({getter}, timeout=self.settings.idle_timeout)
            if not done:
                await connection.close()  # don't hold a server slot while only retries wait
            return await getter
        finally:
            getter.cancel()

    async def _attempt(self, connection: Connection, job: _Job) -> None:
        if self.limiter is not None:
            await self._pause(self.limiter.reserve())
        if self.stop is not None and self.stop.is_set():
            self._halt(None)  # at once, not when the watcher task gets its turn
        if self.stopping:
            self._leave(job)
            return
        job.attempts += 1
        try:
            reply = await self._send(connection, job.message)
        except CampaignBlocked as exc:
            self._halt(exc)
            self._leave(job)
        except PermanentError as exc:
            self._finish(job, DeliveryStatus.FAILED, exc.code, exc.reason, permanent=True)
        except TransientError as exc:
            if exc.maybe_delivered:  # never retried here: a retry could mail them twice
                self._finish(job, DeliveryStatus.UNKNOWN, exc.code, exc.reason)
            else:
                self._retry_or_fail(job, exc)
        else:
            self._finish(job, DeliveryStatus.SENT, reply.code, reply.reason)

    async def _send(self, connection: Connection, message: OutgoingMessage) -> Reply:
        """One SMTP transaction, its 'sending' mark durable before the server can take the
        message: the transport awaits the mark before DATA, so the commit's round trip
        overlaps MAIL FROM and RCPT TO instead of coming before them."""
        marked = asyncio.ensure_future(self.journal.sending(message))
        try:
            return await connection.send(
                message.sender, message.recipient, message.data, ready=marked
            )
        except DeliveryError:
            await marked  # the attempt is on record before its outcome (or its error stops us)
            raise
        finally:
            if not marked.done():  # the transport failed some other way: nothing left behind
                marked.cancel()

    def _retire(self, exc: ConnectionFailed) -> None:
        # The server may allow fewer connections than we open: the pool shrinks to fit. When
        # no worker can connect at all, the campaign cannot go on now; failing every customer
        # for that would be wrong.
        self.live_workers -= 1
        log.warning("a delivery connection gave up: %s", exc.reason)
        if self.live_workers == 0:
            self._halt(CampaignBlocked(exc.code, f"no connection could be opened: {exc.text}"))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when delivery halts."""
        if seconds > 0 and not self.stopping:
            waiter = asyncio.ensure_future(self.stopped.wait())
            try:  # not wait_for: on 3.11 it can swallow a cancellation
                await asyncio.wait({waiter}, timeout=seconds)
            finally:
                waiter.cancel()

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.settings.backoff_base, self.settings.backoff_max)

    # --- where a message goes next ---

    def _retry_or_fail(self, job: _Job, exc: TransientError) -> None:
        if job.attempts >= self.settings.max_attempts:
            self._finish(job, DeliveryStatus.FAILED, exc.code, exc.reason)
            return
        if self.stopping:
            self._leave(job)
            return
        self.stats.retried += 1
        loop = asyncio.get_running_loop()
        self.timers[job] = loop.call_later(self._backoff(job.attempts), self._wake, job)

    def _wake(self, job: _Job) -> None:
        del self.timers[job]
        self.queue.put_nowait(job)

    def _requeue(self, job: _Job) -> None:
        if self.stopping:
            self._leave(job)
        else:
            self.queue.put_nowait(job)

    def _finish(
        self,
        job: _Job,
        status: DeliveryStatus,
        code: int | None,
        reason: str,
        permanent: bool = False,
    ) -> None:
        message = job.message
        outcome = Outcome(
            message.customer_id, message.message_id, status, job.attempts, code, reason, permanent
        )
        if status is DeliveryStatus.SENT:
            self.stats.sent += 1
        elif status is DeliveryStatus.FAILED:
            self.stats.failed += 1
        else:
            self.stats.unknown += 1
        self.journal.finished(outcome)
        self._account(job)
        if self.progress is not None:
            self.progress(outcome)

    def _leave(self, job: _Job) -> None:
        """Delivery stopped before this message finished: leave it for a later run."""
        if job.attempts == 0:
            self.stats.not_attempted += 1
        else:
            self.stats.released += 1
            self.journal.released(job.message)
        self._account(job)

    def _account(self, job: _Job) -> None:
        self.outstanding -= 1
        self.window.release()
        if self.input_done and self.outstanding == 0 and not self.stopping:
            self._end_workers()
