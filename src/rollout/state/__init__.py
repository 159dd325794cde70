"""The state database: the one record of which customer holds which hash and who was mailed.

SQLite in WAL mode. Every change that matters is one transaction: a chunk of customers with
their hashes and rejects, or one delivery state change. A kill at any moment therefore loses at
most the chunk in flight, and a re-run reads back what was done instead of doing it again.
The flow process is the only writer; readers (status, preview) never block it.

The package, by idea: `schema` (the tables, opening and upgrading a DB), `records` (the rows as
values), `customers`, `deliveries`, `marks` (bounce marks) and `counts` (the queries), `store`
(the `StateStore` that combines them).
"""

from rollout.state.records import CustomerRecord, Delivery, Reject
from rollout.state.schema import now
from rollout.state.store import StateStore

__all__ = ["CustomerRecord", "Delivery", "Reject", "StateStore", "now"]
