"""What an export is made of: its format, its chunks, the reasons a row is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

# In order of precedence: a row with several problems is rejected for the first that applies.
REJECT_REASONS: tuple[str, ...] = (
    "malformed_row",  # more or fewer fields than the header
    "missing_customer_id",
    "bad_customer_id",  # control characters: the id ends up in headers (Message-ID)
    "duplicate_customer_id",  # every row of an id that occurs more than once
    "bad_birth_date",
    "bad_pin_hash",  # the hash column holds something else, e.g. a plaintext PIN
)

CANONICAL_COLUMNS = (
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "birth_date",
    "legi_pin_hash",
)
REQUIRED_COLUMNS = CANONICAL_COLUMNS[:5]
HASH_COLUMN = "legi_pin_hash"
GERMAN_HEADERS = {
    "customer_id": "Kundennummer",
    "first_name": "Vorname",
    "last_name": "Nachname",
    "email": "E-Mail",
    "birth_date": "Geburtsdatum",
    "legi_pin_hash": "Legi-PIN-Hash",
}

BLOCK_BYTES = 1 << 20
SCAN_BLOCK_ROWS = 50_000
MAX_HEADER_CHARS = 1 << 20
# Fed to the pre-pass as one more line (the csv module ends a record at the end of each line it is
# given): if it does not come back as a record of its own, a quote was never closed.
END_MARK = "\x1elegi-pin-end-of-file\x1e"
DATE_SHAPE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}\.\d{1,2}\.\d{4}")

UInt64Array = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]


class ExportError(Exception):
    """The export as a whole cannot be read; str() is one line naming the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class ExportFormat:
    encoding: str  # codec name used for reading and write-back, e.g. "utf-8", "cp1252"
    bom: bool  # the file started with a UTF-8 BOM (write-back reproduces it)
    delimiter: str
    line_terminator: str  # "\r\n" or "\n", as found at the end of the header line
    header: tuple[str, ...]  # original header, in order, plus the hash column if it was absent
    column_map: dict[str, str]  # canonical name -> original header name (incl. "legi_pin_hash")
    hash_column: str  # original header name of the hash column


@dataclass
class ExportChunk:
    """Part of an export; every frame is indexed by the 0-based data row number in the file.

    `rows`: the accepted rows as read, every column of `ExportFormat.header` (str), in order.
    `customers`, one row per accepted row: ``customer_id`` (stripped), ``first_name`` and
    ``last_name`` (`clean_name`), ``email`` (normalised, or ""), ``email_problem`` (None,
    "missing_email" or "bad_email"), ``birth_date`` (`datetime.date` or None), ``pin_hash`` (a
    valid existing hash, or None); those last three have dtype object, so None stays None.
    `rejects`: ``row``, ``line`` (1-based line where the record starts), ``customer_id``,
    ``reason`` (one of `REJECT_REASONS`), ``detail`` (for people; never shows a hash column value).
    """

    rows: pd.DataFrame
    customers: pd.DataFrame
    rejects: pd.DataFrame


@dataclass(frozen=True)
class Scan:
    """What the pre-pass learnt about the records (all arrays are small except in odd files)."""

    records: int
    duplicate_hashes: UInt64Array  # sorted hashes of customer ids occurring more than once
    duplicate_counts: IntArray  # how often each of them occurs
    malformed_rows: IntArray  # sorted data row numbers with the wrong number of fields
    malformed_fields: IntArray  # their field counts
    blank_rows: IntArray  # data row numbers of blank lines (not records; skipped)


@dataclass(frozen=True)
class Layout:
    names: tuple[str, ...]  # header as found in the file
    header_lines: int  # physical lines the header takes
    has_quotes: bool  # any '"' in the file: records may span lines
    stat: tuple[int, int]  # size and mtime, to notice a file replaced under our feet
    today: date
    scan: Scan = field(repr=False)
