"""The brand lock: one run at a time may assign PINs or send for a brand.

An OS lock (`flock`) on `<state-dir>/locks/<brand>.lock`, held for the run's life. The kernel
releases it when the holder exits, however it exits (a kill included), and it is judged by the
open file, not by a process id: two runs in different PID namespaces (containers sharing the
state volume) exclude each other, and a live holder can never be taken for dead. The file also
says who holds it, for the message a second run prints.
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


class LockHeld(RuntimeError):
    """Another live run holds the brand's lock."""


def lock_path(state_dir: Path, brand: str) -> Path:
    return state_dir / "locks" / f"{brand}.lock"


@contextmanager
def brand_lock(state_dir: Path, brand: str, holder: str) -> Iterator[None]:
    """Hold `brand`'s lock while the block runs; raise LockHeld at once if a live run has it."""
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


def holder_of(state_dir: Path, brand: str) -> str | None:
    """Who holds `brand`'s lock now, or None; never creates anything."""
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
