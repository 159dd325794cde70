"""The PIN stage: export chunks in, hashes recorded and written back, chunk by chunk.

Hashing is the expensive part and may run elsewhere (threads, processes, a Dask cluster), so
this module takes it as a parameter: `hash_map` turns a stream of batches of
(customer_id, birth_date) into a stream of hash lists, in order. Everything else—deciding who
needs a PIN, recording, writing back—happens here, in the one process that writes the state DB.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rollout.brands import Brand
from rollout.exports import Export, ExportChunk
from rollout.files import atomic_text
from rollout.model import PinSource
from rollout.pins import IssuedPin, PinHasher, new_pin_hashes
from rollout.seal import PinSealer
from rollout.state import CustomerRecord, Reject, StateStore
from rollout.writeback import WritebackWriter, with_sealed_column, writeback_path

Batch = list[tuple[str, date | None]]
_Tag = TypeVar("_Tag")


class HashMap(Protocol):
    """Draws, hashes (and seals) each batch and hands back its PINs with the batch's own tag,
    in order: whatever runs the work (threads here, a Prefect task runner, a Dask cluster),
    each result stays paired with what it was made for."""

    def __call__(
        self, work: Iterator[tuple[_Tag, Batch]]
    ) -> Iterator[tuple[_Tag, list[IssuedPin]]]: ...


@dataclass
class PinSummary:
    brand: str
    rows_read: int = 0
    generated: int = 0  # new PINs drawn in this run
    kept: int = 0  # valid hashes the export already had
    already_done: int = 0  # PINs a previous (possibly killed) run recorded
    rejected: Counter[str] = field(default_factory=Counter)
    unreachable: Counter[str] = field(default_factory=Counter)
    writeback: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "brand": self.brand,
            "rows_read": self.rows_read,
            "generated": self.generated,
            "kept": self.kept,
            "already_done": self.already_done,
            "rejected": dict(self.rejected),
            "unreachable": dict(self.unreachable),
            "writeback": self.writeback,
        }


@dataclass
class _Plan:
    chunk: ExportChunk
    known: dict[str, tuple[str, PinSource]]  # what a previous run already recorded
    sealed: dict[str, tuple[str, str]]  # customer_id -> (hash, sealed copy) already recorded
    needs_pin: Batch


def local_hash_map(
    hasher: PinHasher, threads: int | None = None, sealer: PinSealer | None = None
) -> HashMap:
    """Hash (and seal) batch after batch in this process, each batch across `threads` threads."""

    def run(work: Iterator[tuple[_Tag, Batch]]) -> Iterator[tuple[_Tag, list[IssuedPin]]]:
        for tag, batch in work:
            yield tag, new_pin_hashes(batch, hasher, threads, sealer) if batch else []

    return run


def assign_pins(
    export: Export,
    brand: Brand,
    store: StateStore,
    state_dir: Path,
    hash_map: HashMap,
    chunk_size: int = 20_000,
) -> PinSummary:
    """Give every valid customer of `export` a hash, record it and write the export back.

    The write-back also carries each generated PIN's sealed copy (`hash_map` makes them), in
    the export's sealed column or one appended after the rest (`with_sealed_column`).
    """
    summary = PinSummary(brand.slug)
    store.forget_rejects(brand.slug)

    def planned() -> Iterator[tuple[_Plan, Batch]]:
        for chunk in export.chunks(chunk_size):
            plan = _plan(chunk, store, brand)
            yield plan, plan.needs_pin

    out = writeback_path(state_dir, brand)
    fmt, sealed_column = with_sealed_column(export.format, brand)
    with WritebackWriter(out, fmt) as writer:
        for plan, issued in hash_map(planned()):
            rows = plan.chunk.rows.copy()
            records = _commit(plan, issued, store, brand, summary)
            rows[export.format.hash_column] = [r.pin_hash for r in records]
            rows[sealed_column] = [r.pin_sealed or "" for r in records]
            writer.write(rows)
    summary.writeback = str(out)
    write_rejects(rejects_path(state_dir, brand), store.rejects(brand.slug))
    return summary


def rejects_path(state_dir: Path, brand: Brand) -> Path:
    return state_dir / "rejects" / f"{brand.slug}.csv"


def write_rejects(path: Path, rejects: list[Reject]) -> None:
    """Every bad row with its reason, for the CRM team to fix at the source (atomic rewrite)."""
    with atomic_text(path, "utf-8") as f:
        out = csv.writer(f)
        out.writerow(["row", "customer_id", "reason", "detail"])
        out.writerows((r.row, r.customer_id, r.reason, r.detail) for r in rejects)


def _plan(chunk: ExportChunk, store: StateStore, brand: Brand) -> _Plan:
    customers = chunk.customers
    ids = customers["customer_id"].tolist()
    known = store.known_hashes(brand.slug, ids)
    sealed = store.sealed_among(brand.slug, ids)
    fresh = customers[customers["pin_hash"].isna() & ~customers["customer_id"].isin(known.keys())]
    batch = list(zip(fresh["customer_id"], fresh["birth_date"], strict=True))
    return _Plan(chunk, known, sealed, batch)


def _commit(
    plan: _Plan, issued: list[IssuedPin], store: StateStore, brand: Brand, summary: PinSummary
) -> list[CustomerRecord]:
    """Record the chunk in one transaction; return each row's record, in row order."""
    if len(issued) != len(plan.needs_pin):
        raise RuntimeError(f"hashing returned {len(issued)} for {len(plan.needs_pin)} PINs")
    drawn = dict(zip((cid for cid, _ in plan.needs_pin), issued, strict=True))
    records = [_record(c, plan, drawn) for c in plan.chunk.customers.itertuples(index=False)]
    bad = plan.chunk.rejects
    rejects = [
        Reject(int(row), str(cid), str(reason), str(detail))
        for row, cid, reason, detail in zip(
            bad["row"].astype(int), bad["customer_id"], bad["reason"], bad["detail"], strict=True
        )
    ]
    store.record_chunk(brand.slug, records, rejects)
    _count(summary, plan, records, rejects)
    return records


def _record(
    c: Any,  # an itertuples row of ExportChunk.customers (untyped by pandas)
    plan: _Plan,
    drawn: dict[str, IssuedPin],
) -> CustomerRecord:
    cid = str(c.customer_id)
    sealed: str | None = None
    if isinstance(c.pin_hash, str) and c.pin_hash:
        pin_hash, source = c.pin_hash, PinSource.KEPT
    elif cid in plan.known:
        pin_hash, source = plan.known[cid]
    else:
        (pin_hash, sealed), source = drawn[cid], PinSource.GENERATED
    if sealed is None and cid in plan.sealed and plan.sealed[cid][0] == pin_hash:
        # Ours from an earlier run (maybe imported by the CRM since): the same sealed copy.
        sealed = plan.sealed[cid][1]
    problem = c.email_problem
    return CustomerRecord(
        customer_id=cid,
        pin_hash=pin_hash,
        pin_source=source,
        first_name=str(c.first_name),
        last_name=str(c.last_name),
        email=str(c.email),
        email_problem=problem if isinstance(problem, str) and problem else None,
        pin_sealed=sealed,
    )


def _count(
    summary: PinSummary, plan: _Plan, records: list[CustomerRecord], rejects: list[Reject]
) -> None:
    summary.rows_read += len(records) + len(rejects)
    summary.generated += len(plan.needs_pin)
    summary.kept += sum(r.pin_source is PinSource.KEPT for r in records)
    summary.already_done += sum(
        r.pin_source is PinSource.GENERATED and r.customer_id in plan.known for r in records
    )
    summary.rejected.update(r.reason for r in rejects)
    summary.unreachable.update(r.email_problem for r in records if r.email_problem)
