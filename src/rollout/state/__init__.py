"""The state database: the one record of which customer holds which hash and who was mailed.

SQLite (the default, a file in the state dir, in WAL mode) or PostgreSQL (once the state
outgrows one host), through one schema and one set of queries (SQLAlchemy Core). Every change
that matters is one transaction: a chunk of customers with their hashes and rejects, a page of
claimed customers, a batch of delivery changes. A kill at any moment therefore loses at most
what was in flight, and a re-run reads back what was done instead of doing it again.

The package, by idea: `connect` (URLs, connections), `tables` (the schema), `versions` (upgrade
steps), `schema` (opening writable or read-only), `records` (rows as values), `customers`,
`claims` (who mails whom; taking back what runs that are gone left), `deliveries`, `marks`
(bounce marks) and `counts` (the queries), `advisory` (the brand lock on PostgreSQL),
`pg_journal` (the delivery journal's batches on PostgreSQL, on psycopg's async connection),
`store` (the `StateStore` that combines them).
"""

from rollout.state.records import CustomerRecord, Delivery, Reject
from rollout.state.schema import now
from rollout.state.store import StateStore

__all__ = ["CustomerRecord", "Delivery", "Reject", "StateStore", "now"]
