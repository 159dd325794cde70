"""Reading a brand's CRM export: format detection, validation, and reasons for bad rows.

`open_export` works out how the file is written (encoding, BOM, delimiter, line ends, which header
names the CRM uses), checks that the required columns are there, and makes one streaming pre-pass
over the records; `Export.chunks` then reads the file with pandas in chunks. Memory stays flat
however large the file, except 8 bytes per row for duplicate detection (see `scan`).

Rules worth knowing:

- Headers match case-insensitively, ignoring spaces, ``-`` and ``_``: ``E-Mail`` = ``email``.
  English or German names are built in; `brand.toml` ``[export.columns]`` adds more.
- A missing hash column is added at the end: ``legi_pin_hash``, or ``Legi-PIN-Hash`` if the
  header is (mostly) German.
- An empty birth date is allowed (``None``: the PIN then just avoids no date); an unparseable,
  impossible (31.02.) or future date rejects the row.
- A record with more or fewer fields than the header is ``malformed_row``: its fields may have
  shifted, so nothing in it is trusted (pandas pads short rows with ``""`` and would hide them,
  hence the field count comes from the pre-pass). Blank lines are not records and are skipped.
- When a row has several problems, the first in `REJECT_REASONS` is reported.
- A customer without a usable e-mail address is still accepted (``email_problem`` says why).

The package, by idea: `model` (format, chunks, reject reasons), `format` (detection), `scan`
(the pre-pass), `chunks` (reading with pandas) and `validate` (the checks).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd

from rollout.addresses import one_line
from rollout.brands import Brand
from rollout.exports.chunks import ChunkReader
from rollout.exports.format import (
    detect_encoding,
    open_text,
    read_header,
    resolve_format,
    sniff,
)
from rollout.exports.model import (
    CANONICAL_COLUMNS,
    END_MARK,
    GERMAN_HEADERS,
    HASH_COLUMN,
    REJECT_REASONS,
    REQUIRED_COLUMNS,
    ExportChunk,
    ExportError,
    ExportFormat,
    Layout,
)
from rollout.exports.scan import scan_records

__all__ = [
    "CANONICAL_COLUMNS",
    "GERMAN_HEADERS",
    "HASH_COLUMN",
    "REJECT_REASONS",
    "REQUIRED_COLUMNS",
    "Export",
    "ExportChunk",
    "ExportError",
    "ExportFormat",
    "export_path",
    "open_export",
]


def export_path(exports_dir: Path, brand: Brand) -> Path:
    return exports_dir / f"{brand.slug}.csv"


def open_export(path: Path, brand: Brand, *, today: date | None = None) -> Export:
    """Detect the format of `path`, check its header and pre-scan it; raises `ExportError`."""
    try:
        stat = path.stat()
        if stat.st_size == 0:
            raise ExportError(path, "empty file")
        encoding, bom, has_quotes = detect_encoding(path, brand.export.encoding)
        with open_text(path, encoding, bom) as text:
            delimiter, line_terminator = sniff(path, text, brand.export.delimiter)
            text.seek(0)
            reader = csv.reader(itertools.chain(text, [END_MARK]), delimiter=delimiter)
            names, header_lines = read_header(path, reader)
            fmt = resolve_format(path, names, brand, encoding, bom, delimiter, line_terminator)
            id_position = names.index(fmt.column_map["customer_id"])
            scan = scan_records(path, reader, len(names), id_position)
    except OSError as e:
        raise ExportError(path, f"cannot read: {e.strerror or e}") from None
    layout = Layout(
        names=names,
        header_lines=header_lines,
        has_quotes=has_quotes,
        stat=(stat.st_size, stat.st_mtime_ns),
        today=today or date.today(),
        scan=scan,
    )
    return Export(path, fmt, layout)


class Export:
    """An opened export: its format, and its rows in chunks (the file is read anew each time)."""

    def __init__(self, path: Path, fmt: ExportFormat, layout: Layout) -> None:
        self.path = path
        self.format = fmt
        self._layout = layout

    @property
    def records(self) -> int:
        """Data records in the file (blank lines not counted)."""
        return self._layout.scan.records - len(self._layout.scan.blank_rows)

    def chunks(self, chunk_size: int = 50_000) -> Iterator[ExportChunk]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self._check_unchanged()
        reader = ChunkReader(self, chunk_size)
        try:
            yield from reader
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
            raise ExportError(self.path, f"unreadable: {one_line(str(e))}") from None

    def _check_unchanged(self) -> None:
        try:
            stat = self.path.stat()
        except OSError as e:
            raise ExportError(self.path, f"cannot read: {e.strerror or e}") from None
        if (stat.st_size, stat.st_mtime_ns) != self._layout.stat:
            raise ExportError(self.path, "file changed since it was opened; open it again")
