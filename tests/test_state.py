"""The state DB: what it keeps, what a re-run reads back, and the brand lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.model import PinSource
from rollout.state import CustomerRecord, Reject, StateStore


def customer(
    cid: str,
    pin_hash: str = "$argon2id$h",
    source: PinSource = PinSource.GENERATED,
    email: str = "a@example.com",
    problem: str | None = None,
) -> CustomerRecord:
    return CustomerRecord(cid, pin_hash, source, "Max", "Muster", email, problem)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore.in_dir(tmp_path)


def test_a_recorded_hash_survives_a_reopen(tmp_path: Path) -> None:
    with StateStore.in_dir(tmp_path) as s:
        s.record_chunk("congstar", [customer("1", "$argon2id$one")], [])
    with StateStore.in_dir(tmp_path) as s:
        assert s.known_hashes("congstar", ["1", "2"]) == {
            "1": ("$argon2id$one", PinSource.GENERATED)
        }


def test_a_newer_export_hash_replaces_ours_and_counts_as_kept(store: StateStore) -> None:
    store.record_chunk("congstar", [customer("1", "$argon2id$ours")], [])
    store.record_chunk("congstar", [customer("1", "$argon2id$ours")], [])
    assert store.customer("congstar", "1").pin_source is PinSource.GENERATED  # type: ignore[union-attr]
    store.record_chunk("congstar", [customer("1", "$argon2id$app", PinSource.KEPT)], [])
    record = store.customer("congstar", "1")
    assert record is not None
    assert (record.pin_hash, record.pin_source) == ("$argon2id$app", PinSource.KEPT)


def test_brands_do_not_share_customers(store: StateStore) -> None:
    store.record_chunk("congstar", [customer("1", "$argon2id$c")], [])
    assert store.known_hashes("jamobil", ["1"]) == {}


def test_rejects_are_replaced_by_a_new_read(store: StateStore) -> None:
    store.record_chunk("jamobil", [], [Reject(3, "", "missing_customer_id", "empty")])
    assert [r.reason for r in store.rejects("jamobil")] == ["missing_customer_id"]
    store.forget_rejects("jamobil")
    assert store.rejects("jamobil") == []


def test_pending_pages_through_everyone_reachable_once(store: StateStore) -> None:
    people = [customer(f"{i:04d}") for i in range(25)]
    people.append(customer("9999", email="", problem="missing_email"))
    store.record_chunk("congstar", people, [])
    seen = [r.customer_id for r in store.iter_pending("congstar", "c1", page=7)]
    assert seen == [f"{i:04d}" for i in range(25)]
    assert [r.customer_id for r in store.iter_pending("congstar", "c1", limit=10, page=4)] == [
        f"{i:04d}" for i in range(10)
    ]


def test_delivery_lifecycle_and_interrupted_sends(store: StateStore) -> None:
    store.record_chunk("congstar", [customer("1"), customer("2"), customer("3")], [])
    store.mark_sending("congstar", "c1", "1", "<m1@x>", "a@example.com")
    store.mark_finished("congstar", "c1", "1", "sent", 250, "ok")
    store.mark_sending("congstar", "c1", "2", "<m2@x>", "a@example.com")  # then the run dies
    assert [r.customer_id for r in store.iter_pending("congstar", "c1")] == ["3"]
    assert store.mark_interrupted("congstar", "c1") == 1
    assert [d.status for d in store.deliveries("congstar", "c1")] == ["sent", "unknown"]
    store.mark_sending("congstar", "c1", "3", "<m3@x>", "a@example.com")
    store.release("congstar", "c1", "3")
    assert [r.customer_id for r in store.iter_pending("congstar", "c1")] == ["3"]


def test_unreachable_lists_bad_addresses_and_permanent_failures(store: StateStore) -> None:
    store.record_chunk(
        "congstar",
        [customer("1"), customer("2", email="", problem="bad_email"), customer("3")],
        [],
    )
    store.mark_sending("congstar", "c1", "1", "<m1@x>", "a@example.com")
    store.mark_finished("congstar", "c1", "1", "failed", 550, "user unknown", permanent=True)
    assert [(row[0], row[4]) for row in store.unreachable("congstar")] == [
        ("1", "failed: 550 user unknown"),
        ("2", "bad_email"),
    ]


def test_read_only_view_changes_nothing(tmp_path: Path) -> None:
    assert StateStore.existing(tmp_path) is None
    assert not (tmp_path / "state.sqlite3").exists()
    with StateStore.in_dir(tmp_path) as s:
        s.record_chunk("congstar", [customer("1")], [])
    view = StateStore.existing(tmp_path)
    assert view is not None
    with view, pytest.raises(Exception, match="readonly"):
        view.db.exec_driver_sql("DELETE FROM customers")
