"""The tables, defined once for SQLite and PostgreSQL (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)

metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    Column("brand", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("pin_hash", Text, nullable=False),
    Column("pin_source", Text, nullable=False),
    Column("pin_since", Text, nullable=False),
    Column("first_name", Text, nullable=False),
    Column("last_name", Text, nullable=False),
    Column("email", Text, nullable=False),
    # NULL: reachable; else why not (missing_email, bad_email)
    Column("email_problem", Text),
    Column("updated_at", Text, nullable=False),
    # The generated PIN sealed to the brand's self-service backend (HPKE); NULL for kept
    # PINs and for PINs drawn before sealing existed.
    Column("pin_sealed", Text),
    PrimaryKeyConstraint("brand", "customer_id"),
    CheckConstraint("pin_source IN ('generated', 'kept')"),
    sqlite_with_rowid=False,
)

rejects = Table(
    "rejects",
    metadata,
    Column("brand", Text, nullable=False),
    Column("row", Integer, nullable=False),  # 0-based data row of the export
    Column("customer_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    PrimaryKeyConstraint("brand", "row"),
    sqlite_with_rowid=False,
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("brand", Text, nullable=False),
    Column("campaign", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("address", Text, nullable=False),
    # sending: claimed (attempts 0) or handed to the server, no answer yet;
    # unknown: a run died while sending
    Column("status", Text, nullable=False),
    Column("permanent", Integer, nullable=False, server_default="0"),  # for good at this address
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("code", Integer),
    Column("reason", Text, nullable=False, server_default=""),
    Column("updated_at", Text, nullable=False),
    # Which connection claimed it (PostgreSQL: backend pid@start), so that only the claims of
    # a run that is gone are taken back; NULL on SQLite, where one run holds the brand.
    Column("runner", Text),
    PrimaryKeyConstraint("brand", "campaign", "customer_id"),
    CheckConstraint("status IN ('sending', 'sent', 'failed', 'unknown', 'bounced')"),
    sqlite_with_rowid=False,
)
Index("deliveries_by_message_id", deliveries.c.message_id)
Index("deliveries_by_address", func.lower(deliveries.c.address))

# What bounces said of a customer beyond one delivery's fate: 'complaint' (an ARF report:
# never mailed again) and 'sender_problem' (a soft failure caused by our side: a blocker
# in status until a later attempt, or until `bounces --clear-sender-problems`).
bounce_marks = Table(
    "bounce_marks",
    metadata,
    Column("brand", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("mark", Text, nullable=False),
    Column("campaign", Text, nullable=False),
    Column("reason", Text, nullable=False),  # no addresses: a category, status, redacted words
    Column("since", Text, nullable=False),
    PrimaryKeyConstraint("brand", "customer_id", "mark"),
    CheckConstraint("mark IN ('complaint', 'sender_problem')"),
    sqlite_with_rowid=False,
)

# One row: the number of upgrade steps (rollout.state.versions) this DB has had.
schema_version = Table(
    "rollout_schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)
