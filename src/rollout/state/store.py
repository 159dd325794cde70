"""The state store: one connection, opened writable (schema brought up to date) or read-only."""

from __future__ import annotations

import threading
from pathlib import Path

from rollout.state.connect import has_tables, sqlite_path, state_url
from rollout.state.counts import Counts
from rollout.state.customers import Customers
from rollout.state.deliveries import Deliveries
from rollout.state.marks import BounceMarks
from rollout.state.schema import open_read_only, open_writable


class StateStore(Customers, Deliveries, BounceMarks, Counts):
    """One connection to the state DB (SQLite or PostgreSQL); any thread, one at a time."""

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.url = url
        self._turn = threading.RLock()
        # Read-only for previews and reports: they must not create or change anything.
        self.db = open_read_only(url) if read_only else open_writable(url)

    @classmethod
    def in_dir(
        cls,
        state_dir: Path,
        read_only: bool = False,
        url: str | None = None,
    ) -> StateStore:
        """The state DB at `url`, or by default the SQLite file in `state_dir`."""
        return cls(state_url(state_dir, url), read_only)

    @classmethod
    def existing(cls, state_dir: Path, url: str | None = None) -> StateStore | None:
        """A read-only view of the state DB, or None where no run has made one yet."""
        chosen = state_url(state_dir, url)
        path = sqlite_path(chosen)
        if path is not None and not path.is_file():
            return None
        store = cls(chosen, read_only=True)  # a file or DB without our tables: nothing ran yet
        if has_tables(store.db):
            return store
        store.close()
        return None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
