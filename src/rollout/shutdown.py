"""Stopping on SIGTERM or SIGINT without losing track of anything.

`interruptible()` wraps a whole command: a signal raises `Interrupted`, so the process unwinds
normally (transactions roll back, the brand lock is released, exit hooks such as the temporary
Prefect server's shutdown run) instead of dying where it stands.

`stop_gracefully(on_stop)` wraps work that can stop cleanly, such as sending: the first signal
calls `on_stop` (take no new customers, let the transactions in flight finish and record their
outcomes) and the block ends as usual; `requested()` then tells which signal came. A second
signal raises `Interrupted` at once. Both work in the main thread only (elsewhere they do
nothing), as Python's signal handlers do.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """The operator (or the system) asked the run to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signal = signum


_stops: list[Callable[[], object]] = []  # innermost last
_received: list[int] = []


def requested() -> int | None:
    """The signal that asked for a graceful stop, if one did."""
    return _received[0] if _received else None


def received(signum: int) -> None:
    """Note a stop request that another handler took in our place (Prefect's runner puts its
    own SIGTERM handler in): `requested()` then tells it, as if ours had."""
    if not _received:
        _received.append(signum)


def _handle(signum: int, frame: FrameType | None) -> None:
    if _stops and not _received:
        _received.append(signum)
        _stops[-1]()
        return
    raise Interrupted(signum)


@contextmanager
def _handlers() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def interruptible() -> Iterator[None]:
    with _handlers():
        yield


@contextmanager
def stop_gracefully(on_stop: Callable[[], object]) -> Iterator[None]:
    # Installed again here: a flow engine may have put its own handler in place meanwhile.
    with _handlers():
        if not _stops:
            _received.clear()  # a new stoppable stretch of work
        _stops.append(on_stop)
        try:
            yield
        finally:
            _stops.remove(on_stop)
