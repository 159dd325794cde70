"""The export written back with its hash column filled, for the CRM to import.

Same columns and order, delimiter, encoding, BOM and line ends as the export; rejected rows are
left out (they are in the rejects report). The file appears atomically: rows go to a temporary
file in the same directory, which is flushed, fsynced and renamed over the target only when the
`with` block ends without an exception. A reader sees the old file or the new one, never half a
file; after a failure the temporary file is gone and the previous write-back is untouched.

    with WritebackWriter(writeback_path(state_dir, brand), export.format) as writer:
        for chunk in export.chunks():
            writer.write(chunk.rows.assign(**{export.format.hash_column: hashes}))

Quoting is minimal (fields with the delimiter, quotes or line breaks are quoted), so an unchanged
field reads back identical. One exception to "minimal": in a file with LF line ends, Python's csv
writer would leave a lone CR unquoted and readers would split the record there, so rows holding a
CR are written with every field quoted.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Literal, TextIO

import numpy as np
import pandas as pd

from rollout.brands import Brand
from rollout.exports import GERMAN_HEADERS, ExportFormat
from rollout.files import atomic_text, remove_stale_temp_files

_Quoting = Literal[0, 1, 2, 3]


def writeback_path(state_dir: Path, brand: Brand) -> Path:
    return state_dir / "writeback" / f"{brand.slug}.csv"


SEALED_COLUMN = "legi_pin_sealed"
SEALED_COLUMN_DE = "Legi-PIN-Sealed"


def with_sealed_column(fmt: ExportFormat, brand: Brand) -> tuple[ExportFormat, str]:
    """The write-back format with the sealed-PIN column, and that column's name.

    Name: brand.toml's `[export] sealed_column`, else `Legi-PIN-Sealed` when most of the
    export's known columns have German headers, else `legi_pin_sealed`. An export that already
    has the column keeps it in place; otherwise it is appended after every other column.
    """
    present = [n for n in (SEALED_COLUMN_DE, SEALED_COLUMN) if n in fmt.header]
    name = brand.export.sealed_column or (present[0] if present else _sealed_name(fmt))
    if name in fmt.header:
        return fmt, name
    return dataclasses.replace(fmt, header=(*fmt.header, name)), name


def _sealed_name(fmt: ExportFormat) -> str:
    def key(text: str) -> str:
        return re.sub(r"[\s_-]+", "", text).casefold()

    german = sum(key(h) == key(GERMAN_HEADERS.get(c, "")) for c, h in fmt.column_map.items())
    english = sum(key(h) == key(c) for c, h in fmt.column_map.items())
    return SEALED_COLUMN_DE if german > english else SEALED_COLUMN


class WritebackWriter:
    """Writes rows in the export's format to `path`, atomically; use it as a context manager."""

    def __init__(self, path: Path, fmt: ExportFormat) -> None:
        self.path = path
        self.format = fmt
        self.rows_written = 0
        self._file: TextIO | None = None
        self._stack = ExitStack()

    def __enter__(self) -> WritebackWriter:
        # Left by a run that was killed or hit a full disk (the brand lock says none is running).
        remove_stale_temp_files(self.path)
        encoding = "utf-8-sig" if self.format.bom else self.format.encoding
        with ExitStack() as stack, self._naming_the_file():
            # 0600: customer ids, hashes and sealed PINs are for the CRM import, not for everyone.
            self._file = stack.enter_context(atomic_text(self.path, encoding, mode=0o600))
            self._write_header()
            self._stack = stack.pop_all()
        return self

    def write(self, rows: pd.DataFrame) -> None:
        """Appends `rows` (columns exactly `ExportFormat.header`, in order) to the file."""
        if self._file is None:
            raise RuntimeError("WritebackWriter.write outside its with block")
        if tuple(rows.columns) != self.format.header:
            raise ValueError(
                f"write-back rows must have the export's columns {list(self.format.header)}, "
                f"got {list(rows.columns)}"
            )
        with self._naming_the_file():
            for part, quoting in self._parts(rows):
                part.to_csv(
                    self._file,
                    header=False,
                    index=False,
                    sep=self.format.delimiter,
                    lineterminator=self.format.line_terminator,
                    quoting=quoting,
                    na_rep="",
                )
        self.rows_written += len(rows)

    @contextmanager
    def _naming_the_file(self) -> Iterator[None]:
        """A full disk says "No space left on device" without saying where: add the path."""
        try:
            yield
        except OSError as exc:
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Without an exception the file replaces `path`; with one, `path` stays as it was."""
        self._file = None
        with self._naming_the_file():
            self._stack.__exit__(exc_type, exc, traceback)

    def _write_header(self) -> None:
        assert self._file is not None
        csv.writer(
            self._file, delimiter=self.format.delimiter, lineterminator=self.format.line_terminator
        ).writerow(self.format.header)

    def _parts(self, rows: pd.DataFrame) -> list[tuple[pd.DataFrame, _Quoting]]:
        """Consecutive runs of rows, each with its quoting (rows with a lone CR: all quoted)."""
        if self.format.line_terminator != "\n" or rows.empty:
            return [(rows, csv.QUOTE_MINIMAL)]
        has_cr = np.zeros(len(rows), dtype=bool)
        for column in rows.columns:
            has_cr |= rows[column].astype(str).str.contains("\r", regex=False).to_numpy(dtype=bool)
        if not has_cr.any():
            return [(rows, csv.QUOTE_MINIMAL)]
        starts = np.flatnonzero(np.diff(has_cr.astype(np.int8), prepend=-1))
        ends = [*starts[1:], len(rows)]
        return [
            (rows.iloc[s:e], csv.QUOTE_ALL if has_cr[s] else csv.QUOTE_MINIMAL)
            for s, e in zip(starts, ends, strict=True)
        ]
