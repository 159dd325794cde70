"""The connection every part of the state store shares, and its helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.sql.elements import TextClause

from rollout.state.schema import begin


def sql(query: str, *expanding: str) -> TextClause:
    """A query with :named parameters; the `expanding` ones take a list (IN :ids)."""
    clause = text(query)
    return clause.bindparams(*(bindparam(name, expanding=True) for name in expanding))


class Connected:
    """A state DB connection; the query mixins (customers, deliveries, marks, counts) use it.

    Outside `transaction()` each statement commits on its own; inside it, statements join
    the one transaction (nested `transaction()` blocks join the outermost).
    """

    db: Connection
    _depth: int = 0
    # Any thread may use the store (the delivery journal commits from its own); one at a time.
    _turn: threading.RLock

    @property
    def dialect(self) -> str:
        return self.db.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._turn:
            yield from self._transaction()

    def _transaction(self) -> Iterator[Connection]:
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        begin(self.db)
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self._depth = 0
            self.db.exec_driver_sql("ROLLBACK")
            raise
        self._depth = 0
        self.db.exec_driver_sql("COMMIT")

    def _rows(
        self, query: TextClause, params: Mapping[str, Any] | None = None
    ) -> list[Sequence[Any]]:
        """All rows of a query (or of a statement's RETURNING), read at once."""
        with self._turn:
            return list(self.db.execute(query, params or {}).all())

    def _write(
        self, query: TextClause, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> int:
        """Run a statement (once per row of a list); how many rows it changed."""
        with self._turn:
            return int(self.db.execute(query, params).rowcount)

    def _among(
        self, query: str, params: dict[str, object], customer_ids: Sequence[str]
    ) -> Iterator[Sequence[Any]]:
        """Rows of `query` restricted to `customer_ids`, asked in parts of a bounded size."""
        clause = sql(f"{query} AND customer_id IN :ids", "ids")
        for start in range(0, len(customer_ids), 900):
            part = list(customer_ids[start : start + 900])
            with self._turn:
                rows = self.db.execute(clause, {**params, "ids": part}).all()
            yield from rows
