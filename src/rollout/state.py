"""The state database: the one record of which customer holds which hash and who was mailed.

SQLite in WAL mode. Every change that matters is one transaction: a chunk of customers with
their hashes and rejects, or one delivery state change. A kill at any moment therefore loses at
most the chunk in flight, and a re-run reads back what was done instead of doing it again.
The flow process is the only writer; readers (status, preview) never block it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollout.model import PinSource, Recipient

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


@dataclass(frozen=True)
class CustomerRecord:
    """A customer as the state DB keeps them (no plaintext PIN exists here, ever)."""

    customer_id: str
    pin_hash: str
    pin_source: PinSource
    first_name: str
    last_name: str
    email: str
    email_problem: str | None
    pin_sealed: str | None = None  # generated PINs only: the sealed copy (rollout.seal)


@dataclass(frozen=True)
class Reject:
    row: int
    customer_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class Delivery:
    customer_id: str
    message_id: str
    address: str
    status: str
    permanent: bool
    attempts: int
    code: int | None
    reason: str
    updated_at: str  # when the delivery last changed: the latest send, for 'sent'


DELIVERY_COLUMNS = (
    "customer_id, message_id, address, status, permanent, attempts, code, reason, updated_at"
)


def _delivery(row: Sequence[object]) -> Delivery:
    cid, mid, address, status, permanent, attempts, code, reason, updated = row
    return Delivery(
        str(cid),
        str(mid),
        str(address),
        str(status),
        bool(permanent),
        int(attempts),  # type: ignore[call-overload]
        None if code is None else int(code),  # type: ignore[call-overload]
        str(reason),
        str(updated),
    )


class StateStore:
    """One connection to the state DB; use from one thread (each task opens its own)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        if read_only:  # for previews and reports: must not create or change anything
            self.db = _open_read_only(path)
            self._stand_in_for_newer_tables()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL survives a process kill; only power loss can undo the last commits.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._add_missing_columns()

    # Columns added after the first release: a DB made before them gains them on opening.
    ADDED_COLUMNS = (
        # The generated PIN sealed to the brand's self-service backend (HPKE); NULL for kept
        # PINs and for PINs drawn before sealing existed.
        ("customers", "pin_sealed", "TEXT"),
    )

    def _add_missing_columns(self) -> None:
        for table, column, decl in self.ADDED_COLUMNS:
            present = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def _stand_in_for_newer_tables(self) -> None:
        """A DB written by an older version lacks bounce_marks: an empty temporary one (in
        memory, not in the file) stands in, so read-only views work before the next run."""
        found = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bounce_marks'"
        ).fetchone()
        if found is None:
            start = SCHEMA.index("CREATE TABLE IF NOT EXISTS bounce_marks")
            table = SCHEMA[start : SCHEMA.index(";", start)]
            self.db.execute(table.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))

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

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- PINs -------------------------------------------------------------------------------

    def known_hashes(
        self, brand: str, customer_ids: Sequence[str]
    ) -> dict[str, tuple[str, PinSource]]:
        """customer_id -> (hash, source) for those of `customer_ids` that already hold one."""
        rows = self._among(
            "SELECT customer_id, pin_hash, pin_source FROM customers WHERE brand = ?",
            [brand],
            customer_ids,
        )
        return {cid: (h, PinSource(src)) for cid, h, src in rows}

    def sealed_among(self, brand: str, customer_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """customer_id -> (hash, sealed PIN) for those of `customer_ids` with a sealed copy."""
        rows = self._among(
            "SELECT customer_id, pin_hash, pin_sealed FROM customers "
            "WHERE brand = ? AND pin_sealed IS NOT NULL",
            [brand],
            customer_ids,
        )
        return {cid: (h, sealed) for cid, h, sealed in rows}

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

    def record_chunk(
        self, brand: str, customers: Iterable[CustomerRecord], rejects: Iterable[Reject]
    ) -> None:
        """Store a chunk's customers and rejects in one transaction.

        A customer already present keeps their hash unless the export brings a different
        valid one (they changed it in the app since): then the export's hash is the truth.
        """
        stamp = now()
        with self.transaction() as db:
            db.executemany(
                """
                INSERT INTO customers (brand, customer_id, pin_hash, pin_source, pin_since,
                    first_name, last_name, email, email_problem, updated_at, pin_sealed)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (brand, customer_id) DO UPDATE SET
                    pin_sealed = CASE WHEN excluded.pin_hash = pin_hash
                                      THEN coalesce(pin_sealed, excluded.pin_sealed)
                                      ELSE excluded.pin_sealed END,
                    pin_since = CASE WHEN excluded.pin_hash = pin_hash THEN pin_since
                                     ELSE excluded.pin_since END,
                    pin_source = CASE WHEN excluded.pin_hash = pin_hash THEN pin_source
                                      ELSE excluded.pin_source END,
                    pin_hash = excluded.pin_hash,
                    first_name = excluded.first_name,
                    last_name = excluded.last_name,
                    email = excluded.email,
                    email_problem = excluded.email_problem,
                    updated_at = excluded.updated_at
                """,
                (
                    (
                        brand,
                        c.customer_id,
                        c.pin_hash,
                        c.pin_source.value,
                        stamp,
                        c.first_name,
                        c.last_name,
                        c.email,
                        c.email_problem,
                        stamp,
                        c.pin_sealed,
                    )
                    for c in customers
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO rejects VALUES (?, ?, ?, ?, ?)",
                ((brand, r.row, r.customer_id, r.reason, r.detail) for r in rejects),
            )

    def forget_rejects(self, brand: str) -> None:
        """Rejects are derived from the export: a new read of it starts them afresh."""
        with self.transaction() as db:
            db.execute("DELETE FROM rejects WHERE brand = ?", (brand,))

    def rejects(self, brand: str) -> list[Reject]:
        rows = self.db.execute(
            "SELECT row, customer_id, reason, detail FROM rejects WHERE brand = ? ORDER BY row",
            (brand,),
        )
        return [Reject(*r) for r in rows]

    def customer(self, brand: str, customer_id: str) -> CustomerRecord | None:
        row = self.db.execute(
            "SELECT customer_id, pin_hash, pin_source, first_name, last_name, email, "
            "email_problem, pin_sealed FROM customers WHERE brand = ? AND customer_id = ?",
            (brand, customer_id),
        ).fetchone()
        return _customer(row) if row else None

    def unreachable(self, brand: str) -> Iterator[tuple[str, str, str, str, str]]:
        """Customers the e-mail cannot reach: no usable address, or it failed for good there.

        They need another channel (letter, SMS).
        """
        yield from self.db.execute(
            """
            SELECT customer_id, first_name, last_name, email, email_problem FROM customers
            WHERE brand = ? AND email_problem IS NOT NULL
            UNION ALL
            SELECT c.customer_id, c.first_name, c.last_name, c.email,
                   d.status || ': ' || coalesce(d.code, '') || ' ' || d.reason
            FROM customers c JOIN deliveries d
              ON d.brand = c.brand AND d.customer_id = c.customer_id
            WHERE c.brand = ? AND d.permanent = 1 AND d.address = c.email
            ORDER BY 1
            """,
            (brand, brand),
        )

    def mark_unreachable(self, brand: str, customer_id: str, problem: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE customers SET email_problem = ?, updated_at = ? "
                "WHERE brand = ? AND customer_id = ?",
                (problem, now(), brand, customer_id),
            )

    # --- deliveries -------------------------------------------------------------------------

    def pending_recipients(
        self, brand: str, campaign: str, after: str = "", limit: int = 1000
    ) -> list[Recipient]:
        """Reachable customers with no delivery record yet, in customer_id order (keyset paging)."""
        rows = self.db.execute(
            """
            SELECT c.customer_id, c.first_name, c.last_name, c.email, c.pin_source
            FROM customers c
            WHERE c.brand = ? AND c.email_problem IS NULL AND c.customer_id > ?
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.brand = c.brand
                              AND d.campaign = ? AND d.customer_id = c.customer_id)
              AND NOT EXISTS (SELECT 1 FROM bounce_marks m WHERE m.brand = c.brand
                              AND m.customer_id = c.customer_id AND m.mark = 'complaint')
            ORDER BY c.customer_id LIMIT ?
            """,
            (brand, after, campaign, limit),
        )
        return [Recipient(r[0], r[1], r[2], r[3], PinSource(r[4])) for r in rows]

    def iter_pending(
        self, brand: str, campaign: str, limit: int | None = None, page: int = 1000
    ) -> Iterator[Recipient]:
        """All pending recipients (at most `limit`), a page at a time so memory stays flat."""
        after, left = "", limit
        while left is None or left > 0:
            size = page if left is None else min(page, left)
            batch = self.pending_recipients(brand, campaign, after, size)
            yield from batch
            if len(batch) < size:
                return
            after = batch[-1].customer_id
            left = None if left is None else left - len(batch)

    def mailed_among(self, brand: str, campaign: str, customer_ids: Sequence[str]) -> set[str]:
        """Those of `customer_ids` with any delivery record (sent, failed, unknown ...)."""
        rows = self._among(
            "SELECT customer_id FROM deliveries WHERE brand = ? AND campaign = ?",
            [brand, campaign],
            customer_ids,
        )
        return {r[0] for r in rows}

    # Each delivery change is one statement, so one implicit transaction: durable in WAL
    # without the cost of an explicit BEGIN/COMMIT pair (it is paid per message).

    def mark_sending(
        self, brand: str, campaign: str, customer_id: str, message_id: str, address: str
    ) -> None:
        self.db.execute(
            """
            INSERT INTO deliveries (brand, campaign, customer_id, message_id, address,
                                    status, attempts, updated_at)
            VALUES (?, ?, ?, ?, ?, 'sending', 1, ?)
            ON CONFLICT (brand, campaign, customer_id) DO UPDATE SET
                status = 'sending', address = excluded.address,
                attempts = attempts + 1, updated_at = excluded.updated_at
            """,
            (brand, campaign, customer_id, message_id, address, now()),
        )

    def mark_finished(
        self,
        brand: str,
        campaign: str,
        customer_id: str,
        status: str,
        code: int | None,
        reason: str,
        permanent: bool = False,
    ) -> None:
        self.db.execute(
            """
            UPDATE deliveries SET status = ?, code = ?, reason = ?, permanent = ?,
                   updated_at = ?
            WHERE brand = ? AND campaign = ? AND customer_id = ?
            """,
            (status, code, reason, int(permanent), now(), brand, campaign, customer_id),
        )

    def release(self, brand: str, campaign: str, customer_id: str) -> None:
        """The server certainly did not take the message: the customer is pending again."""
        self.db.execute(
            "DELETE FROM deliveries WHERE brand = ? AND campaign = ? AND customer_id = ? "
            "AND status = 'sending'",
            (brand, campaign, customer_id),
        )

    def mark_interrupted(self, brand: str, campaign: str) -> int:
        """A run that died between 'sending' and the answer: the outcome is unknown."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE deliveries SET status = 'unknown', updated_at = ? "
                "WHERE brand = ? AND campaign = ? AND status = 'sending'",
                (now(), brand, campaign),
            )
            return cur.rowcount

    def deliveries_matching(
        self, *, message_id: str | None = None, address: str | None = None
    ) -> list[tuple[str, str, Delivery]]:
        """(brand, campaign, delivery) for a bounce's Message-ID or address (case-insensitive)."""
        if message_id is not None:
            where, arg = "message_id = ?", message_id
        elif address is not None:
            where, arg = "lower(address) = lower(?)", address
        else:
            raise ValueError("give message_id or address")
        rows = self.db.execute(
            f"SELECT brand, campaign, {DELIVERY_COLUMNS} "  # noqa: S608 - fixed text
            f"FROM deliveries WHERE {where}",
            (arg,),
        )
        return [(r[0], r[1], _delivery(r[2:])) for r in rows]

    def mark_bounced(
        self, brand: str, campaign: str, customer_id: str, hard: bool, code: int | None, reason: str
    ) -> None:
        """A hard bounce is final at this address; a soft one leaves the customer for resend."""
        status = "bounced" if hard else "failed"
        self.mark_finished(brand, campaign, customer_id, status, code, reason, permanent=hard)

    # --- bounce marks: complaints and sender problems ----------------------------------------

    def add_mark(self, brand: str, campaign: str, customer_id: str, mark: str, reason: str) -> None:
        """Mark a customer (a complaint stays as first recorded; a sender problem is updated)."""
        verb = "INSERT OR IGNORE" if mark == "complaint" else "INSERT OR REPLACE"
        self.db.execute(
            f"{verb} INTO bounce_marks VALUES (?, ?, ?, ?, ?, ?)",
            (brand, customer_id, mark, campaign, reason, now()),
        )

    def has_mark(self, brand: str, customer_id: str, mark: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM bounce_marks WHERE brand = ? AND customer_id = ? AND mark = ?",
            (brand, customer_id, mark),
        ).fetchone()
        return row is not None

    def clear_marks(self, brand: str, mark: str, customer_id: str | None = None) -> int:
        """Remove a brand's marks of one kind (of one customer, if given); how many went."""
        query = "DELETE FROM bounce_marks WHERE brand = ? AND mark = ?"
        args: list[object] = [brand, mark]
        if customer_id is not None:
            query += " AND customer_id = ?"
            args.append(customer_id)
        return self.db.execute(query, args).rowcount

    def mark_counts(self, brand: str, campaign: str) -> dict[str, dict[str, int]]:
        """{'complaint': {reason: n}, 'sender_problem': {reason: n}}; a sender problem counts
        only while its delivery still holds the failure that raised it (any later attempt,
        or a later bounce, ends it)."""
        rows = self.db.execute(
            """
            SELECT m.mark, m.reason, count(*) FROM bounce_marks m
            LEFT JOIN deliveries d ON d.brand = m.brand AND d.campaign = m.campaign
                                   AND d.customer_id = m.customer_id
            WHERE m.brand = ? AND m.campaign = ?
              AND (m.mark = 'complaint' OR (d.status = 'failed' AND m.since >= d.updated_at))
            GROUP BY 1, 2
            """,
            (brand, campaign),
        )
        counts: dict[str, dict[str, int]] = {"complaint": {}, "sender_problem": {}}
        for mark, reason, count in rows:
            counts[mark][reason] = count
        return counts

    def deliveries(
        self, brand: str, campaign: str, statuses: Sequence[str] | None = None
    ) -> list[Delivery]:
        query = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE brand = ? AND campaign = ?"  # noqa: S608
        args: list[object] = [brand, campaign]
        if statuses:
            query += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        rows = self.db.execute(query + " ORDER BY customer_id", args)
        return [_delivery(r) for r in rows]

    # --- counts -----------------------------------------------------------------------------

    def counts(self, brand: str, campaign: str) -> dict[str, dict[str, int]]:
        """Everything `status` shows, as {group: {key: count}}."""
        q = self.db.execute
        return {
            "pins": dict(
                q("SELECT pin_source, count(*) FROM customers WHERE brand = ? GROUP BY 1", (brand,))
            ),
            "rejected": dict(
                q("SELECT reason, count(*) FROM rejects WHERE brand = ? GROUP BY 1", (brand,))
            ),
            "unreachable": dict(
                q(
                    "SELECT email_problem, count(*) FROM customers "
                    "WHERE brand = ? AND email_problem IS NOT NULL GROUP BY 1",
                    (brand,),
                )
            ),
            "deliveries": dict(
                q(
                    "SELECT status, count(*) FROM deliveries WHERE brand = ? AND campaign = ? "
                    "GROUP BY 1",
                    (brand, campaign),
                )
            ),
            "failed": dict(
                q(
                    "SELECT coalesce(code, 0) || ' ' || reason, count(*) FROM deliveries "
                    "WHERE brand = ? AND campaign = ? AND status = 'failed' GROUP BY 1",
                    (brand, campaign),
                )
            ),
        }

    def pending_count(self, brand: str, campaign: str) -> int:
        row = self.db.execute(
            """
            SELECT count(*) FROM customers c
            WHERE c.brand = ? AND c.email_problem IS NULL
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.brand = c.brand
                              AND d.campaign = ? AND d.customer_id = c.customer_id)
              AND NOT EXISTS (SELECT 1 FROM bounce_marks m WHERE m.brand = c.brand
                              AND m.customer_id = c.customer_id AND m.mark = 'complaint')
            """,
            (brand, campaign),
        ).fetchone()
        return int(row[0])

    # --- the forecast (read-only) -----------------------------------------------------------

    def backlog_counts(self, brand: str, campaign: str) -> dict[str, int]:
        """Deliveries not done yet, by what comes next (for `rollout plan`).

        retry: a soft failure, or a permanent one at an address that has changed since (resend
        mails them); failed, bounced: for good at the current address; unknown: a run died
        mid-send ('sending' too: the next run marks it unknown).
        """
        row = self.db.execute(
            """
            SELECT
              coalesce(sum(d.status IN ('unknown', 'sending')), 0),
              coalesce(sum(c.email_problem IS NULL AND d.status IN ('failed', 'bounced')
                           AND (d.permanent = 0 OR d.address <> c.email)), 0),
              coalesce(sum(c.email_problem IS NULL AND d.status = 'failed'
                           AND d.permanent = 1 AND d.address = c.email), 0),
              coalesce(sum(c.email_problem IS NULL AND d.status = 'bounced'
                           AND d.permanent = 1 AND d.address = c.email), 0)
            FROM deliveries d JOIN customers c
              ON c.brand = d.brand AND c.customer_id = d.customer_id
            WHERE d.brand = ? AND d.campaign = ?
            """,
            (brand, campaign),
        ).fetchone()
        return dict(zip(("unknown", "retry", "failed", "bounced"), map(int, row), strict=True))

    def sent_per_second(
        self, brand: str, campaign: str, limit: int = 10_000
    ) -> list[tuple[datetime, int]]:
        """(second, mails recorded sent in it) for the latest `limit` seconds with sends."""
        rows = self.db.execute(
            "SELECT updated_at, count(*) FROM deliveries "
            "WHERE brand = ? AND campaign = ? AND status = 'sent' "
            "GROUP BY updated_at ORDER BY updated_at DESC LIMIT ?",
            (brand, campaign, limit),
        )
        return [(datetime.fromisoformat(at), int(n)) for at, n in rows]


def _open_read_only(path: Path) -> sqlite3.Connection:
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


def _customer(row: Sequence[object]) -> CustomerRecord:
    return CustomerRecord(
        customer_id=str(row[0]),
        pin_hash=str(row[1]),
        pin_source=PinSource(str(row[2])),
        first_name=str(row[3]),
        last_name=str(row[4]),
        email=str(row[5]),
        email_problem=None if row[6] is None else str(row[6]),
        pin_sealed=None if row[7] is None else str(row[7]),
    )
