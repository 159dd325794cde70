"""The state DB: what it keeps, what a re-run reads back, and who may mail whom.

Every test runs on SQLite and on a real PostgreSQL server (the `state_url` fixture)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from pg_server import PgServer
from rollout.brands import campaign_id, load_brand
from rollout.model import PinSource
from rollout.report import brand_forecast, brand_status
from rollout.state import CustomerRecord, Reject, StateStore
from rollout.state.connect import StateUrlError, has_tables


def customer(
    cid: str,
    pin_hash: str = "$argon2id$h",
    source: PinSource = PinSource.GENERATED,
    email: str = "a@example.com",
    problem: str | None = None,
) -> CustomerRecord:
    return CustomerRecord(cid, pin_hash, source, "Max", "Muster", email, problem)


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    with StateStore(state_url) as opened:
        yield opened


def test_a_recorded_hash_survives_a_reopen(state_url: str) -> None:
    with StateStore(state_url) as s:
        s.record_chunk("congstar", [customer("1", "$argon2id$one")], [])
    with StateStore(state_url) as s:
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


def test_delivery_lifecycle_and_interrupted_sends(state_url: str) -> None:
    with StateStore(state_url) as run:
        run.record_chunk("congstar", [customer("1"), customer("2"), customer("3")], [])
        run.mark_sending("congstar", "c1", "1", "<m1@x>", "a@example.com")
        run.mark_finished("congstar", "c1", "1", "sent", 250, "ok")
        run.mark_sending("congstar", "c1", "2", "<m2@x>", "a@example.com")  # then the run dies
    with StateStore(state_url) as store:
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


def test_read_only_view_changes_nothing(tmp_path: Path, state_url: str) -> None:
    assert StateStore.existing(tmp_path, state_url) is None
    assert not (tmp_path / "state.sqlite3").exists()
    with StateStore(state_url) as s:
        s.record_chunk("congstar", [customer("1")], [])
    view = StateStore.existing(tmp_path, state_url)
    assert view is not None
    with view, pytest.raises(Exception, match=r"readonly|read-only"):
        view.mark_unreachable("congstar", "1", "bad_email")
    with StateStore(state_url) as s:
        assert s.customer("congstar", "1").email_problem is None  # type: ignore[union-attr]


def test_two_runners_never_claim_the_same_customer(state_url: str) -> None:
    with StateStore(state_url) as a, StateStore(state_url) as b:
        a.record_chunk("congstar", [customer(f"{i:03d}") for i in range(30)], [])
        firsts = a.claim_pending("congstar", "c1", limit=10)
        seconds = b.claim_pending("congstar", "c1", limit=10)
        with a.claims("congstar", "c1", page=4) as more:
            rest = list(more)
            claimed = [r.customer_id for r in (*firsts, *seconds, *rest)]
            assert sorted(claimed) == [f"{i:03d}" for i in range(30)]  # each once
            assert b.claim_pending("congstar", "c1") == []
            assert a.counts("congstar", "c1")["deliveries"] == {"claimed": 30}
        # Leaving gave back a's claims never handed to the server; on PostgreSQL b's are still
        # b's (on SQLite one run holds the brand: every claim there is its own).
        left = {} if state_url.startswith("sqlite") else {"claimed": 10}
        assert a.counts("congstar", "c1")["deliveries"] == left
        assert [r.customer_id for r in a.iter_pending("congstar", "c1", limit=1)] == ["000"]


def test_claims_are_one_page_ahead_of_the_reader_and_never_beyond_the_limit(
    state_url: str,
) -> None:
    with StateStore(state_url) as a:
        a.record_chunk("congstar", [customer(f"{i:03d}") for i in range(30)], [])
        with a.claims("congstar", "c1", limit=10, page=4) as recipients:
            first = next(recipients)
            assert first.customer_id == "000"
            # Page 1 is being read, page 2 is claimed meanwhile on the claims thread.
            assert wait_for(lambda: claimed(a) == 8), claimed(a)
            rest = [r.customer_id for r in recipients]
            assert rest == [f"{i:03d}" for i in range(1, 10)]  # 10, the limit: no more
            assert claimed(a) == 10
        assert claimed(a) == 0


def claimed(store: StateStore) -> int:
    return store.counts("congstar", "c1")["deliveries"].get("claimed", 0)


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_claims_never_sent_go_back_and_a_runner_that_is_gone_loses_its_claims(
    state_url: str,
) -> None:
    with StateStore(state_url) as dead:
        dead.record_chunk("congstar", [customer(str(i)) for i in range(1, 7)], [])
        dead.claim_pending("congstar", "c1", limit=3)  # 1, 2, 3
        dead.mark_sending("congstar", "c1", "1", "<m1@x>", "a@example.com")  # then it dies
    with StateStore(state_url) as a:
        # The dead runner's mail in flight is unknown; what it only claimed is pending again.
        assert a.mark_interrupted("congstar", "c1") == 1
        assert [(d.customer_id, d.status) for d in a.deliveries("congstar", "c1")] == [
            ("1", "unknown")
        ]
        mine = a.claim_pending("congstar", "c1", limit=2)
        assert [r.customer_id for r in mine] == ["2", "3"]
        a.mark_sending("congstar", "c1", "2", "<m2@x>", "a@example.com")
        assert a.release_claims("congstar", "c1") == 1  # 3: claimed, never handed over
        assert [r.customer_id for r in a.iter_pending("congstar", "c1")] == ["3", "4", "5", "6"]


def test_status_and_plan_tell_claims_from_mails_in_doubt(state_url: str, tmp_path: Path) -> None:
    """A run that dies leaves claims (never tried: they go back to pending) and a mail in
    flight (in doubt). Status and the forecast must not count the claims as in doubt."""
    brand = load_brand("congstar")
    campaign = campaign_id(brand)
    with StateStore(state_url) as dead:
        dead.record_chunk("congstar", [customer(str(i)) for i in range(1, 7)], [])
        dead.claim_pending("congstar", campaign, limit=3)  # 1, 2, 3
        dead.mark_sending("congstar", campaign, "1", "<m1@x>", "a@example.com")  # then it dies
    with StateStore(state_url, read_only=True) as view:
        status = brand_status(view, brand, date(2022, 5, 1))
        assert (status.sending, status.claimed, status.pending) == (1, 2, 3)
        assert view.backlog_counts("congstar", campaign)["unknown"] == 1
        # In doubt: 1. Still to mail: the pending and the claimed.
        forecast = brand_forecast(view, brand, datetime(2022, 5, 1, tzinfo=UTC))
        assert (forecast.backlog.unknown, forecast.backlog.new) == (1, 5)


def test_a_live_runners_claims_are_not_taken_back_on_postgresql(fresh_postgres_db: str) -> None:
    """(On SQLite one run holds the brand: every claim it finds is a dead run's.)"""
    with StateStore(fresh_postgres_db) as a, StateStore(fresh_postgres_db) as b:
        a.record_chunk("congstar", [customer("1"), customer("2")], [])
        b.claim_pending("congstar", "c1", limit=1)
        b.mark_sending("congstar", "c1", "1", "<m1@x>", "a@example.com")
        assert a.mark_interrupted("congstar", "c1") == 0
        assert [d.status for d in a.deliveries("congstar", "c1")] == ["sending"]


def test_the_state_password_comes_from_the_environment_never_from_the_url(
    fresh_postgres_db: str, postgres_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("ROLLOUT_STATE_PASSWORD", "wrong")
    with pytest.raises(OperationalError, match="password authentication failed"):
        StateStore(fresh_postgres_db)
    monkeypatch.setenv("ROLLOUT_STATE_PASSWORD", postgres_server.password)
    with StateStore(fresh_postgres_db) as store:
        assert store.dialect == "postgresql"
    with_password = fresh_postgres_db.replace("@", f":{postgres_server.password}@", 1)
    with pytest.raises(StateUrlError, match="remove the password") as refused:
        StateStore(with_password)
    assert postgres_server.password not in str(refused.value)


@pytest.mark.parametrize(
    "url", ["mysql://db/rollout", "sqlite://", "sqlite:///:memory:", "not a url"]
)
def test_a_state_url_the_rollout_cannot_use_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(StateUrlError, match=r"^state URL"):
        StateStore(url)


# --- through the command ------------------------------------------------------------------


def test_state_url_problems_are_one_line_and_never_show_the_password(
    tmp_path: Path,
    fresh_postgres_db: str,
    postgres_server: PgServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.cli import main

    state = ["--state-dir", str(tmp_path)]
    secret = postgres_server.password
    with_password = fresh_postgres_db.replace("@", f":{secret}@", 1)
    assert main(["status", *state, "--state-url", with_password]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "--state-url" in said and secret not in said
    # A server that is not there: the environment failed (4), in one line naming the URL.
    gone = "postgresql://rollout@127.0.0.1:1/rollout"
    assert main(["status", *state, "--state-url", gone]) == 4
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "state DB postgresql://rollout@127.0.0.1:1/rollout" in said
    # A database where nothing has run: status says so and creates nothing.
    assert main(["status", *state, "--state-url", fresh_postgres_db]) == 2
    assert "nothing has run there yet" in capsys.readouterr().err
    with StateStore(fresh_postgres_db, read_only=True) as view:
        assert not has_tables(view.db)
