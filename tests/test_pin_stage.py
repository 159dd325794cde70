"""The PIN stage end to end on real files and a real state DB (no Prefect here; see test_flows)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, TEST_PEPPERS

from rollout.assign import assign_pins, local_hash_map
from rollout.brands import load_brand
from rollout.exports import export_path, open_export
from rollout.keys import brand_keys
from rollout.model import PinSource
from rollout.pins import PinHasher, generate_pin, is_pin_hash, verify_pin
from rollout.seal import is_sealed_pin
from rollout.state import StateStore
from rollout.writeback import with_sealed_column, writeback_path

BRANDS = ["congstar", "jamobil", "pennymobil"]


def run_stage(exports: Path, state_dir: Path, brand: str, chunk_size: int = 64) -> object:
    b = load_brand(brand)
    keys = brand_keys(b)
    with StateStore.in_dir(state_dir) as store:
        export = open_export(export_path(exports, b), b)
        hash_map = local_hash_map(keys.hasher(), 2, keys.sealer)
        return assign_pins(export, b, store, state_dir, hash_map, chunk_size)


def read_rows(path: Path, brand: str) -> list[dict[str, str]]:
    fmt = open_export(path, load_brand(brand)).format
    with path.open(encoding=fmt.encoding, newline="") as f:
        if fmt.bom:
            assert f.read(1) == "\ufeff"
        return list(csv.DictReader(f, delimiter=fmt.delimiter))


@pytest.mark.parametrize("brand", BRANDS)
def test_everyone_valid_gets_a_hash_and_the_export_comes_back_unchanged_otherwise(
    tmp_path: Path, brand: str
) -> None:
    summary = run_stage(SAMPLES, tmp_path, brand)
    fmt = open_export(export_path(SAMPLES, load_brand(brand)), load_brand(brand)).format
    out_fmt, sealed = with_sealed_column(fmt, load_brand(brand))
    ours = {fmt.hash_column, sealed}
    original = {
        r[fmt.column_map["customer_id"]]: r for r in read_rows(SAMPLES / f"{brand}.csv", brand)
    }
    written = read_rows(writeback_path(tmp_path, load_brand(brand)), brand)

    with StateStore.in_dir(tmp_path) as store:
        rejected_rows = {r.row for r in store.rejects(brand)}
        for row in written:
            cid = row[fmt.column_map["customer_id"]]
            record = store.customer(brand, cid)
            assert record is not None and is_pin_hash(row[fmt.hash_column])
            assert row[fmt.hash_column] == record.pin_hash
            before = original[cid]
            # every other column byte for byte as it came; an existing hash kept as it was
            assert {k: v for k, v in row.items() if k not in ours} == {
                k: v for k, v in before.items() if k not in ours
            }
            if before.get(fmt.hash_column):
                assert record.pin_source is PinSource.KEPT
                assert row[fmt.hash_column] == before[fmt.hash_column]
                assert row[sealed] == ""  # we never had a customer-chosen PIN
            else:
                assert is_sealed_pin(row[sealed]) and row[sealed] == record.pin_sealed
    assert rejected_rows, "the samples carry bad rows on purpose"
    assert summary.rows_read == len(written) + len(rejected_rows)  # type: ignore[attr-defined]
    assert list(written[0]) == list(out_fmt.header) == [*fmt.header, sealed]


def test_rejects_file_rows_are_left_out_of_the_write_back(tmp_path: Path) -> None:
    run_stage(SAMPLES, tmp_path, "pennymobil")
    brand = load_brand("pennymobil")
    fmt = open_export(export_path(SAMPLES, brand), brand).format
    with StateStore.in_dir(tmp_path) as store:
        rejected = store.rejects("pennymobil")
    reasons = {r.reason for r in rejected}
    assert {
        "missing_customer_id",
        "duplicate_customer_id",
        "bad_birth_date",
        "bad_pin_hash",
    } <= reasons
    written_ids = [
        r[fmt.column_map["customer_id"]]
        for r in read_rows(writeback_path(tmp_path, brand), "pennymobil")
    ]
    duplicated = {r.customer_id for r in rejected if r.reason == "duplicate_customer_id"}
    assert not duplicated & set(written_ids)
    assert len(written_ids) == len(set(written_ids))


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    first = run_stage(SAMPLES, tmp_path, "congstar")
    out = writeback_path(tmp_path, load_brand("congstar"))
    before = out.read_bytes()
    with StateStore.in_dir(tmp_path) as store:
        hashes = store.db.exec_driver_sql(
            "SELECT customer_id, pin_hash, pin_since FROM customers"
        ).fetchall()
    second = run_stage(SAMPLES, tmp_path, "congstar", chunk_size=7)
    assert out.read_bytes() == before
    with StateStore.in_dir(tmp_path) as store:
        assert (
            store.db.exec_driver_sql(
                "SELECT customer_id, pin_hash, pin_since FROM customers"
            ).fetchall()
            == hashes
        )
    assert second.generated == 0  # type: ignore[attr-defined]
    assert second.already_done == first.generated  # type: ignore[attr-defined]


def test_a_pin_changed_in_the_app_since_arrives_with_the_next_export(tmp_path: Path) -> None:
    brand = load_brand("jamobil")
    exports = tmp_path / "exports"
    exports.mkdir()
    shutil.copy(SAMPLES / "jamobil.csv", exports / "jamobil.csv")
    run_stage(exports, tmp_path, "jamobil")
    with StateStore.in_dir(tmp_path) as store:
        cid, ours, sealed = store.db.exec_driver_sql(
            "SELECT customer_id, pin_hash, pin_sealed FROM customers "
            "WHERE pin_source = 'generated' LIMIT 1"
        ).fetchone()
    # The CRM imports our write-back, the customer picks a new PIN in the app, the CRM exports.
    theirs = PinHasher.from_env().hash(generate_pin(None), cid)
    new_export = (
        writeback_path(tmp_path, brand).read_bytes().replace(ours.encode(), theirs.encode())
    )
    (exports / "jamobil.csv").write_bytes(new_export)

    again = run_stage(exports, tmp_path, "jamobil")

    with StateStore.in_dir(tmp_path) as store:
        record = store.customer("jamobil", cid)
    assert record is not None
    assert (record.pin_hash, record.pin_source) == (theirs, PinSource.KEPT)
    assert again.generated == 0  # type: ignore[attr-defined]
    assert record.pin_sealed is None  # the sealed copy of our PIN is stale: gone
    stale_removed = new_export.replace(sealed.encode(), b"")
    assert writeback_path(tmp_path, brand).read_bytes() == stale_removed


def test_generated_hashes_verify_only_for_their_own_customer(tmp_path: Path) -> None:
    run_stage(SAMPLES, tmp_path, "jamobil")
    with StateStore.in_dir(tmp_path) as store:
        cid, stored = store.db.exec_driver_sql(
            "SELECT customer_id, pin_hash FROM customers WHERE pin_source = 'generated' LIMIT 1"
        ).fetchone()
    peppers = {"test-jamobil": TEST_PEPPERS["jamobil"]}
    every = [f"{n:04d}" for n in range(10_000)]
    matches = [pin for pin in every if verify_pin(stored, pin, cid, peppers)]
    assert len(matches) == 1  # exactly one PIN opens it: the one the customer was given
    assert not verify_pin(stored, matches[0], cid + "0", peppers)  # bound to the customer


def test_every_bad_row_is_listed_with_its_reason(tmp_path: Path) -> None:
    run_stage(SAMPLES, tmp_path, "congstar")
    with (tmp_path / "rejects" / "congstar.csv").open(encoding="utf-8", newline="") as f:
        listed = list(csv.DictReader(f))
    with StateStore.in_dir(tmp_path) as store:
        assert [(int(r["row"]), r["reason"]) for r in listed] == [
            (r.row, r.reason) for r in store.rejects("congstar")
        ]
    assert all(r["detail"] for r in listed)
