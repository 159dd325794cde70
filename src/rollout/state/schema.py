"""The tables, and how a DB made by an older version is brought up to date when opened."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    brand         TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    pin_hash      TEXT NOT NULL,
    pin_source    TEXT NOT NULL CHECK (pin_source IN ('generated', 'kept')),
    pin_since     TEXT NOT NULL,
    first_name    TEXT NOT NULL,
    last_name     TEXT NOT NULL,
    email         TEXT NOT NULL,
    email_problem TEXT,             -- NULL: reachable; else why not (missing_email, bad_email)
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (brand, customer_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rejects (
    brand       TEXT NOT NULL,
    row         INTEGER NOT NULL,  -- 0-based data row of the export
    customer_id TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (brand, row)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS deliveries (
    brand       TEXT NOT NULL,
    campaign    TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    address     TEXT NOT NULL,
    -- sending: handed to the server, no answer yet; unknown: a run died while sending
    status      TEXT NOT NULL
                CHECK (status IN ('sending', 'sent', 'failed', 'unknown', 'bounced')),
    permanent   INTEGER NOT NULL DEFAULT 0,  -- failed/bounced for good at this address
    attempts    INTEGER NOT NULL DEFAULT 0,
    code        INTEGER,
    reason      TEXT NOT NULL DEFAULT '',
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (brand, campaign, customer_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_message_id ON deliveries (message_id);
CREATE INDEX IF NOT EXISTS deliveries_by_address ON deliveries (lower(address));

-- What bounces said of a customer beyond one delivery's fate: 'complaint' (an ARF report:
-- never mailed again) and 'sender_problem' (a soft failure caused by our side: a blocker
-- in status until a later attempt, or until `bounces --clear-sender-problems`).
CREATE TABLE IF NOT EXISTS bounce_marks (
    brand       TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    mark        TEXT NOT NULL CHECK (mark IN ('complaint', 'sender_problem')),
    campaign    TEXT NOT NULL,
    reason      TEXT NOT NULL,  -- no addresses: a category, status and redacted words
    since       TEXT NOT NULL,
    PRIMARY KEY (brand, customer_id, mark)
) WITHOUT ROWID;

"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# Columns added after the first release: a DB made before them gains them on opening.
ADDED_COLUMNS = (
    # The generated PIN sealed to the brand's self-service backend (HPKE); NULL for kept
    # PINs and for PINs drawn before sealing existed.
    ("customers", "pin_sealed", "TEXT"),
)


def open_writable(path: Path) -> sqlite3.Connection:
    """The DB at `path`, made or brought up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL survives a process kill; only power loss can undo the last commits.
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    for table, column, decl in ADDED_COLUMNS:
        present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    return db


def open_read_only(path: Path) -> sqlite3.Connection:
    """The DB at `path` as it stands: nothing is created or changed, not even the schema."""
    db = _connect_read_only(path)
    _stand_in_for_newer_tables(db)
    return db


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    # A read-only directory (a mounted copy, a snapshot): SQLite cannot create the WAL index
    # beside the file. Nobody can write there either, so the file is read as it stands.
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def _stand_in_for_newer_tables(db: sqlite3.Connection) -> None:
    """A DB written by an older version lacks bounce_marks: an empty temporary one (in memory,
    not in the file) stands in, so read-only views work before the next run."""
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bounce_marks'"
    ).fetchone()
    if found is None:
        start = SCHEMA.index("CREATE TABLE IF NOT EXISTS bounce_marks")
        table = SCHEMA[start : SCHEMA.index(";", start)]
        db.execute(table.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
