"""Opening the state DB: writable (made or brought up to date) or read-only (as it stands)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, text
from sqlalchemy.schema import CreateTable

from rollout.state import versions
from rollout.state.connect import connect
from rollout.state.tables import bounce_marks


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def open_writable(url: str) -> Connection:
    """The DB at `url`, made or brought up to date."""
    db = connect(url)
    try:
        begin(db)
        try:
            versions.upgrade(db)
        except BaseException:
            db.exec_driver_sql("ROLLBACK")
            raise
        db.exec_driver_sql("COMMIT")
    except BaseException:
        db.close()
        raise
    return db


def open_read_only(url: str) -> Connection:
    """The DB at `url` as it stands: nothing is created or changed, not even the schema."""
    db = connect(url, read_only=True)
    if db.dialect.name == "sqlite":
        _stand_in_for_newer_tables(db)
    return db


def begin(db: Connection) -> None:
    """Start a write transaction (SQLite: take the write lock now, not at the first write)."""
    db.exec_driver_sql("BEGIN IMMEDIATE" if db.dialect.name == "sqlite" else "BEGIN")


def _stand_in_for_newer_tables(db: Connection) -> None:
    """A DB written by an older version lacks bounce_marks: an empty temporary one (in memory,
    not in the file) stands in, so read-only views work before the next run."""
    found = db.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bounce_marks'")
    ).first()
    if found is None:
        ddl = str(CreateTable(bounce_marks).compile(dialect=db.dialect))
        db.exec_driver_sql(ddl.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
