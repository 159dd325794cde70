"""Where the state DB is (a URL) and how a connection to it is opened.

`sqlite:///PATH` (the default: `<state-dir>/state.sqlite3`) or `postgresql://HOST[:PORT]/DB`.
A URL never holds a password: it would end up in flow parameters, logs and process lists.
PostgreSQL takes it from libpq's own places (PGPASSWORD, ~/.pgpass, a service file) or from
ROLLOUT_STATE_PASSWORD, read here, where it is used, like every secret of the rollout.

Every connection runs in autocommit mode and `Connected.transaction()` issues BEGIN and
COMMIT itself: SQLite needs BEGIN IMMEDIATE (take the write lock first, never fail midway on
an upgrade), which SQLAlchemy's own transactions cannot say.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

DEFAULT_FILE = "state.sqlite3"
PASSWORD_VARIABLE = "ROLLOUT_STATE_PASSWORD"  # noqa: S105 - the name, not a secret


class StateUrlError(ValueError):
    """A state URL this rollout cannot use (the message says why, without the secret)."""


def state_url(state_dir: Path, url: str | None = None) -> str:
    """The state DB's URL: the one given, or the SQLite file in the state dir."""
    return url or f"sqlite:///{(state_dir / DEFAULT_FILE).as_posix()}"


def parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StateUrlError("state URL: expected sqlite:///PATH or postgresql://HOST/DB") from None
    if parsed.password is not None:
        raise StateUrlError(
            f"state URL {shown(parsed)}: remove the password; give it in PGPASSWORD, a "
            "~/.pgpass or service file, or ROLLOUT_STATE_PASSWORD"
        )
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend != "sqlite":
        raise StateUrlError(f"state URL {shown(parsed)}: only sqlite and postgresql are supported")
    if parsed.database in (None, "", ":memory:"):
        raise StateUrlError("state URL: sqlite:///PATH needs a file path")
    return parsed.set(drivername="sqlite")


def shown(url: URL | str) -> str:
    """The URL as logs and messages may show it: never a password."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def describe(url: str) -> str:
    """How messages name the state DB: its file for SQLite, else its URL (no password)."""
    path = sqlite_path(url)
    return str(path) if path is not None else shown(url)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL."""
    parsed = parse(url)
    return Path(str(parsed.database)) if parsed.get_backend_name() == "sqlite" else None


def connect(url: str, *, read_only: bool = False) -> Connection:
    """One connection for a store's life (usable from one thread at a time, any thread)."""
    parsed = parse(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(Path(str(parsed.database)), read_only)
    else:
        engine = _postgresql_engine(parsed, read_only)
    return engine.connect()


def _sqlite_engine(path: Path, read_only: bool) -> Engine:
    if read_only:
        return create_engine(
            "sqlite://",
            creator=lambda: _sqlite_read_only(path),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        URL.create("sqlite", database=str(path)),
        poolclass=NullPool,
        connect_args={"timeout": 30, "check_same_thread": False},
        isolation_level="AUTOCOMMIT",
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi: sqlite3.Connection, _record: object) -> None:
        dbapi.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL survives a process kill; only power loss can undo the last commits.
        dbapi.execute("PRAGMA synchronous=NORMAL")

    return engine


def _sqlite_read_only(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    # A read-only directory (a mounted copy, a snapshot): SQLite cannot create the WAL index
    # beside the file. Nobody can write there either, so the file is read as it stands.
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)


def _postgresql_engine(url: URL, read_only: bool) -> Engine:
    args = _postgresql_args(read_only)
    return create_engine(url, poolclass=NullPool, connect_args=args, isolation_level="AUTOCOMMIT")


def _postgresql_args(read_only: bool) -> dict[str, Any]:
    args: dict[str, Any] = {"application_name": "rollout", "connect_timeout": 10}
    if password := os.environ.get(PASSWORD_VARIABLE):
        args["password"] = password
    if read_only:
        args["options"] = "-c default_transaction_read_only=on"
    return args


def postgresql_params(url: str) -> dict[str, Any]:
    """psycopg's connection parameters for a PostgreSQL state URL, as `connect` uses them
    (host, port, database, user, the URL's query such as sslmode, and the password from the
    environment): for a connection of psycopg's own, such as the journal's async one."""
    parsed = parse(url)
    if parsed.get_backend_name() != "postgresql":
        raise StateUrlError(f"state URL {shown(parsed)}: not a PostgreSQL database")
    _, params = create_engine(parsed).dialect.create_connect_args(parsed)
    params.pop("context", None)  # SQLAlchemy's own type adapters
    return {**params, **_postgresql_args(read_only=False)}


def has_tables(db: Connection) -> bool:
    """Whether a rollout has made its tables there (read-only views need them)."""
    if db.dialect.name == "sqlite":
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'customers'"
    else:
        query = "SELECT 1 WHERE to_regclass('customers') IS NOT NULL"
    return db.execute(text(query)).first() is not None
