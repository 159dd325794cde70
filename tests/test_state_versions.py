"""Schema versions: a state DB made by an earlier release opens, reads and upgrades in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rollout.state import StateStore
from rollout.state.versions import CURRENT, NewerSchema, version_of

FIXTURES = Path(__file__).parent / "fixtures" / "state"


def old_db(state_dir: Path, release: str) -> Path:
    """A state DB built by `release`'s own schema, with one customer mailed, one dying while
    being mailed, and one pending."""
    path = state_dir / "state.sqlite3"
    state_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript((FIXTURES / f"schema-{release}.sql").read_text())
        for cid in ("1", "2", "3"):
            db.execute(
                "INSERT INTO customers (brand, customer_id, pin_hash, pin_source, pin_since, "
                "first_name, last_name, email, email_problem, updated_at) "
                "VALUES ('congstar', ?, '$argon2id$old', 'generated', 't', 'Max', 'Muster', "
                "?, NULL, 't')",
                (cid, f"max{cid}@example.org"),
            )
        for cid, status in (("1", "sent"), ("2", "sending")):
            db.execute(
                "INSERT INTO deliveries (brand, campaign, customer_id, message_id, address, "
                "status, attempts, updated_at) VALUES ('congstar', 'c', ?, ?, ?, ?, 1, "
                "'2022-05-01T10:00:00+00:00')",
                (cid, f"<c-{cid}@x>", f"max{cid}@example.org", status),
            )
    db.close()
    return path


@pytest.mark.parametrize("release", ["0.1.0", "0.2.0"])
def test_a_db_from_an_earlier_release_reads_as_it_stands(tmp_path: Path, release: str) -> None:
    """Status and dry runs open read-only: the old DB answers and is not changed."""
    path = old_db(tmp_path, release)
    before = path.read_bytes()
    view = StateStore.existing(tmp_path)
    assert view is not None
    with view:
        assert view.counts("congstar", "c")["deliveries"] == {"sent": 1, "sending": 1}
        assert view.pending_count("congstar", "c") == 1
        assert view.mark_counts("congstar", "c") == {"complaint": {}, "sender_problem": {}}
        assert version_of(view.db) == 0
    assert path.read_bytes() == before


@pytest.mark.parametrize("release", ["0.1.0", "0.2.0"])
def test_a_db_from_an_earlier_release_upgrades_on_the_next_run(
    tmp_path: Path, release: str
) -> None:
    old_db(tmp_path, release)
    with StateStore.in_dir(tmp_path) as store:
        assert version_of(store.db) == CURRENT
        # What it held is still there, and means what it meant.
        assert store.mark_interrupted("congstar", "c") == 1  # died while sending: unknown
        assert [d.status for d in store.deliveries("congstar", "c")] == ["sent", "unknown"]
        assert store.customer("congstar", "1") is not None
        # What later releases added works on it.
        store.add_mark("congstar", "c", "1", "complaint", "complaint: abuse")
        assert [r.customer_id for r in store.claim_pending("congstar", "c")] == ["3"]
        assert store.counts("congstar", "c")["deliveries"] == {
            "sent": 1,
            "unknown": 1,
            "claimed": 1,
        }
    with StateStore.in_dir(tmp_path) as again:  # a second opening has nothing left to do
        assert version_of(again.db) == CURRENT
        assert again.has_mark("congstar", "1", "complaint")


def test_a_db_from_a_newer_release_is_refused_not_downgraded(tmp_path: Path) -> None:
    with StateStore.in_dir(tmp_path) as store:
        store.db.exec_driver_sql("UPDATE rollout_schema_version SET version = version + 1")
    with pytest.raises(NewerSchema, match=f"knows up to {CURRENT}"):
        StateStore.in_dir(tmp_path)
