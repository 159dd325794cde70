"""The brand lock on PostgreSQL: a session-level advisory lock on a connection of its own.

It lives as long as that connection: a killed run's lock goes with its connection, so there
are no stale locks. Runs that assign PINs or resend take it exclusively; runs that only send
take it shared, so several of them (on several workers) can mail one brand together, each
claiming its own customers. Who holds it is read from PostgreSQL itself (pg_locks and the
holder's application_name), never from a file that could outlive it.
"""

from __future__ import annotations

import os
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from rollout.state.connect import connect

_CLASS = 0x4C504E  # "LPN": the rollout's own advisory lock space
_HOLDERS = text(
    """
    SELECT a.application_name, l.mode, a.backend_start FROM pg_locks l
    JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.classid = :k1 AND l.objid = :k2 AND l.granted
    ORDER BY a.backend_start
    """
)


def _keys(brand: str) -> dict[str, int]:
    # pg_locks shows the two int4 keys as oid (unsigned): keep both in 0 .. 2**31-1.
    return {"k1": _CLASS, "k2": zlib.crc32(brand.encode()) & 0x7FFFFFFF}


@contextmanager
def advisory_lock(url: str, brand: str, holder: str, *, shared: bool) -> Iterator[list[str] | None]:
    """Hold the lock while the block runs (yields None); if it is taken, hold nothing and
    yield who holds it, read on the same connection."""
    db = connect(url)
    try:
        name = f"rollout {holder} {brand} pid {os.getpid()} on {socket.gethostname()}"
        db.execute(text("SELECT set_config('application_name', :n, false)"), {"n": name[:63]})
        kind = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        got = bool(db.execute(text(f"SELECT {kind}(:k1, :k2)"), _keys(brand)).scalar())
        yield None if got else holders(db, brand)
    finally:
        db.close()  # ends the session, and with it the lock


def holders(db: Connection, brand: str) -> list[str]:
    """Who holds `brand`'s lock now (empty: nobody), as a person would want to read it."""
    rows = db.execute(_HOLDERS, _keys(brand)).all()
    return [
        f"{name or 'an unnamed session'} ({'shared' if mode == 'ShareLock' else 'exclusive'}, "
        f"since {started:%Y-%m-%d %H:%M:%S%z})"
        for name, mode, started in rows
    ]
