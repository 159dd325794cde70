"""The connection every part of the state store shares, and its two helpers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class Connected:
    """A state DB connection; the query mixins (customers, deliveries, marks, counts) use it."""

    db: sqlite3.Connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _among(
        self, query: str, args: list[object], customer_ids: Sequence[str]
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of `query` restricted to `customer_ids`, asked in parts that stay under
        SQLite's limit of bound variables."""
        for start in range(0, len(customer_ids), 900):
            part = customer_ids[start : start + 900]
            marks = ",".join("?" * len(part))
            yield from self.db.execute(
                f"{query} AND customer_id IN ({marks})",  # only '?' marks are added
                (*args, *part),
            )
