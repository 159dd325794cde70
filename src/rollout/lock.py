"""The brand lock: one run at a time may assign PINs or send for a brand.

With the state on PostgreSQL it is an advisory lock there (rollout.state.advisory): runs on
several hosts share that DB, not a disk, and runs that only send may share the lock.

With SQLite it is an OS lock (`flock`) on `<state-dir>/locks/<brand>.lock`, held for the run's
life. The kernel releases it when the holder exits, however it exits (a kill included), and it
is judged by the open file, not by a process id: two runs in different PID namespaces
(containers sharing the state volume) exclude each other, and a live holder can never be taken
for dead. The file also says who holds it, for the message a second run prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rollout.state.advisory import advisory_lock, holders
from rollout.state.connect import connect, sqlite_path, state_url


class LockHeld(RuntimeError):
    """Another live run holds the brand's lock."""


def lock_path(state_dir: Path, brand: str) -> Path:
    return state_dir / "locks" / f"{brand}.lock"


@contextmanager
def brand_lock(
    state_dir: Path,
    brand: str,
    holder: str,
    *,
    url: str | None = None,
    shared: bool = False,
) -> Iterator[None]:
    """Hold `brand`'s lock while the block runs; raise LockHeld at once if a live run has it.

    `shared`: a run that only sends (PostgreSQL: others like it may run at the same time;
    SQLite: exclusive all the same, since one process writes a SQLite DB).
    """
    chosen = state_url(state_dir, url)
    if sqlite_path(chosen) is None:
        with advisory_lock(chosen, brand, holder, shared=shared) as others:
            if others is not None:
                raise LockHeld(f"brand {brand} is {_held_by(others)}")
            yield
        return
    with _file_lock(state_dir, brand, holder):
        yield


def _held_by(holders_found: list[str]) -> str:
    """The holders of a PostgreSQL brand lock, as the message of a run it keeps out says."""
    if not holders_found:
        return "locked by another run (it has just ended: try again)"
    return "locked by " + "; ".join(holders_found) + "; it is released when that run ends"


@contextmanager
def _file_lock(state_dir: Path, brand: str, holder: str) -> Iterator[None]:
    path = lock_path(state_dir, brand)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"brand {brand} is {describe(_read(fd))}") from None
        me = {
            "holder": holder,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a lock file left behind says nobody holds it
    finally:
        os.close(fd)  # releases the flock


def holder_of(state_dir: Path, brand: str, url: str | None = None) -> str | None:
    """Who holds `brand`'s lock now, or None; never creates anything."""
    chosen = state_url(state_dir, url)
    if sqlite_path(chosen) is None:
        with connect(chosen, read_only=True) as db:
            found = holders(db, brand)
        return _held_by(found) if found else None
    path = lock_path(state_dir, brand)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe(_read(fd))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe(info: dict[str, object]) -> str:
    if not info:
        return "locked by another run (starting up)"
    return (
        f"locked by {info.get('holder')} (pid {info.get('pid')} on {info.get('host')}, "
        f"since {info.get('since')}); it is released when that process ends"
    )


def _read(fd: int) -> dict[str, object]:
    try:
        value = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
