"""The generator of sample and large synthetic exports."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import pytest

import synthetic
from rollout.brands import load_brand
from rollout.exports import REJECT_REASONS, open_export
from rollout.pins import is_pin_hash
from synthetic import (
    HASH_PLACEHOLDER,
    KNOWN_CASES,
    SPECS,
    STYLES,
    Style,
    main,
    plan_sample,
    write_sample,
    write_synthetic_export,
)

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def test_known_cases_cover_every_reason_and_problem() -> None:
    assert {c.reject for c in KNOWN_CASES} - {None} == set(REJECT_REASONS)
    assert {c.email_problem for c in KNOWN_CASES} - {None} == {"missing_email", "bad_email"}


@pytest.mark.parametrize("style", STYLES)
def test_plans_are_deterministic_and_sized(style: Style) -> None:
    plan = plan_sample(style)
    assert plan == plan_sample(style)
    assert 300 <= len(plan.rows) <= 500
    hashed = sum(r.hashed for r in plan.rows if not r.case) / len(plan.rows)
    assert 0.10 <= hashed <= 0.20
    # a duplicate case rejects its partner too
    duplicates = sum(c.reject == "duplicate_customer_id" for c in KNOWN_CASES)
    assert Counter(plan.rejects().values())["duplicate_customer_id"] == 2 * duplicates


@pytest.mark.parametrize("style", STYLES)
def test_committed_samples_are_what_the_generator_writes(style: Style) -> None:
    """Field by field, hashes aside (those are real argon2id; rewriting them costs seconds)."""
    spec = SPECS[style]
    encoding = "utf-8-sig" if spec.encoding == "utf-8-sig" else spec.encoding
    with (SAMPLES / f"{style}.csv").open(encoding=encoding, newline="") as f:
        records = list(csv.reader(f, delimiter=spec.delimiter))
    plan = plan_sample(style)
    assert records[0] == list(spec.header)
    assert len(records) - 1 == len(plan.rows)
    for record, row in zip(records[1:], plan.rows, strict=True):
        assert len(record) == len(row.values)
        for written, planned in zip(record, row.values, strict=True):
            assert is_pin_hash(written) if planned == HASH_PLACEHOLDER else written == planned


def test_write_sample_is_deterministic(tmp_path: Path) -> None:
    plan = plan_sample("congstar")
    small = dataclasses.replace(plan, rows=plan.rows[:25])
    assert any(r.hashed for r in small.rows)
    write_sample(small, tmp_path / "a.csv")
    write_sample(small, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


@pytest.mark.parametrize("style", STYLES)
def test_large_export_reads_as_summarised(tmp_path: Path, style: Style) -> None:
    path = tmp_path / f"{style}.csv"
    summary = write_synthetic_export(path, 3_000, fmt=style, seed=7, bad_row_share=0.03)
    assert set(summary.rejects) == set(REJECT_REASONS)
    export = open_export(path, load_brand(style))
    assert export.format.header == SPECS[style].header
    rejects: Counter[str] = Counter()
    unreachable: Counter[str] = Counter()
    accepted = hashed = 0
    for chunk in export.chunks(1_000):
        rejects.update(chunk.rejects["reason"])
        unreachable.update(p for p in chunk.customers["email_problem"] if p)
        accepted += len(chunk.customers)
        hashed += int(chunk.customers["pin_hash"].notna().sum())
    assert export.records == summary.rows == 3_000
    assert rejects == summary.rejects
    assert (accepted, hashed) == (summary.accepted, summary.hashed)
    assert unreachable == summary.unreachable


def test_style_is_another_name_for_fmt(tmp_path: Path) -> None:
    summary = write_synthetic_export(tmp_path / "j.csv", 10, style="jamobil", bad_row_share=0)
    assert summary.rejects == Counter()
    assert open_export(tmp_path / "j.csv", load_brand("jamobil")).format.bom


def test_addresses_are_unique_across_brands() -> None:
    addresses = [
        r.values[SPECS[s].column["email"]].strip().lower()
        for s in STYLES
        for r in plan_sample(s).rows
        if not r.email_problem and not r.reject
    ]
    assert len(addresses) == len(set(addresses))


def test_large_export_is_seeded(tmp_path: Path) -> None:
    write_synthetic_export(tmp_path / "a.csv", 500, fmt="jamobil", seed=3)
    write_synthetic_export(tmp_path / "b.csv", 500, fmt="jamobil", seed=3)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        main(["export", str(tmp_path / "big.csv"), "--rows", "200", "--style", "pennymobil"]) == 0
    )
    assert open_export(tmp_path / "big.csv", load_brand("pennymobil")).records == 200
    monkeypatch.setattr(synthetic, "argon2id_hash", lambda pin, salt: "$argon2id$fake")
    assert main(["samples", str(tmp_path / "samples")]) == 0
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [f"{s}.csv" for s in STYLES]
