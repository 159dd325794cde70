"""The state store: one connection, opened writable (schema brought up to date) or read-only."""

from __future__ import annotations

from pathlib import Path

from rollout.state.counts import Counts
from rollout.state.customers import Customers
from rollout.state.deliveries import Deliveries
from rollout.state.marks import BounceMarks
from rollout.state.schema import open_read_only, open_writable


class StateStore(Customers, Deliveries, BounceMarks, Counts):
    """One connection to the state DB; use from one thread (each task opens its own)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        # Read-only for previews and reports: they must not create or change anything.
        self.db = open_read_only(path) if read_only else open_writable(path)

    @classmethod
    def in_dir(cls, state_dir: Path, read_only: bool = False) -> StateStore:
        return cls(state_dir / "state.sqlite3", read_only)

    @classmethod
    def existing(cls, state_dir: Path) -> StateStore | None:
        """A read-only view of the state DB, or None where no run has made one yet."""
        path = state_dir / "state.sqlite3"
        return cls(path, read_only=True) if path.is_file() else None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
