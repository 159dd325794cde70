"""Schema versions: ordered upgrade steps, and the number of them a DB has had.

Opening a DB writable brings it up to date in one transaction (serialized between processes:
SQLite's write lock, PostgreSQL's transaction-scoped advisory lock). Each step is idempotent,
so a DB made before versions were recorded (0.2.0 and earlier) is upgraded by running them all.
A DB that has had more steps than this version knows is refused, not downgraded.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, insert, inspect, select, text, update

from rollout.state.tables import metadata, schema_version


class NewerSchema(RuntimeError):
    """The DB was brought up to date by a newer version of the rollout."""


def _tables(db: Connection) -> None:
    metadata.create_all(db)  # only the missing ones; a new DB gets every column below at once


def _column(table: str, column: str, decl: str) -> Callable[[Connection], None]:
    def step(db: Connection) -> None:
        present = {c["name"] for c in inspect(db).get_columns(table)}
        if column not in present:
            db.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    return step


STEPS: tuple[Callable[[Connection], None], ...] = (
    _tables,  # 1: customers, rejects, deliveries, bounce_marks (0.1.0 had no bounce_marks)
    _column("customers", "pin_sealed", "TEXT"),  # 2: sealed PINs (0.2.0)
    _column("deliveries", "runner", "TEXT"),  # 3: claims by runner (PostgreSQL sharing)
)
CURRENT = len(STEPS)
_UPGRADE_LOCK = 0x6C656769  # "legi": serializes upgrades of one PostgreSQL DB


def upgrade(db: Connection) -> int:
    """Bring the DB to CURRENT inside the caller's transaction; the version it had before."""
    if db.dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK})
    before = version_of(db)
    if before > CURRENT:
        raise NewerSchema(
            f"the state DB has schema version {before}; this rollout knows up to {CURRENT}: "
            "use the newer rollout that upgraded it"
        )
    for step in STEPS[before:]:
        step(db)
    if before == 0:
        db.execute(insert(schema_version).values(version=CURRENT))
    elif before < CURRENT:
        db.execute(update(schema_version).values(version=CURRENT))
    return before


def version_of(db: Connection) -> int:
    """The steps a DB has had: 0 for a new one or one made before versions were recorded."""
    if not inspect(db).has_table(schema_version.name):
        return 0
    found = db.execute(select(schema_version.c.version)).scalar()
    return int(found or 0)
