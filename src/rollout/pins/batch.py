"""The unit of work of the PIN stage: draw, hash and seal a batch, on every core."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from rollout.pins.hashing import PinHasher
from rollout.pins.secret import generate_pin

if TYPE_CHECKING:
    from rollout.seal import PinSealer


class IssuedPin(NamedTuple):
    """What leaves the generate-and-hash step: the hash, and the sealed copy if sealing."""

    pin_hash: str
    sealed: str | None


def new_pin_hashes(
    batch: Sequence[tuple[str, date | None]],
    hasher: PinHasher,
    threads: int | None = None,
    sealer: PinSealer | None = None,
) -> list[IssuedPin]:
    """Draw, hash (and seal, given `sealer`) a fresh PIN per (customer_id, birth_date), in order.

    The unit of work for a thread pool or Dask worker; only hashes and sealed copies leave
    it.  argon2-cffi releases the GIL, so the batch is cut into one contiguous slice per
    thread (not one future per PIN).
    """
    wanted = threads if threads is not None else os.cpu_count() or 1
    if wanted < 1:
        raise ValueError("threads must be at least 1")
    workers = min(wanted, len(batch))
    work = partial(_issue_slice, hasher, sealer)
    if workers <= 1:
        return work(batch)
    size = -(-len(batch) // workers)  # ceiling division
    slices = [batch[i : i + size] for i in range(0, len(batch), size)]
    with ThreadPoolExecutor(max_workers=len(slices), thread_name_prefix="pin-hash") as pool:
        parts = list(pool.map(work, slices))
    return [issued for part in parts for issued in part]


def _issue_slice(
    hasher: PinHasher, sealer: PinSealer | None, part: Sequence[tuple[str, date | None]]
) -> list[IssuedPin]:
    return [_issue(hasher, sealer, customer_id, birth) for customer_id, birth in part]


def _issue(
    hasher: PinHasher, sealer: PinSealer | None, customer_id: str, birth_date: date | None
) -> IssuedPin:
    pin = generate_pin(birth_date)
    sealed = sealer.seal(pin, customer_id) if sealer is not None else None
    return IssuedPin(hasher.hash(pin, customer_id), sealed)
