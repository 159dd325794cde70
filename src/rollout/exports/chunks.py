"""Reading the export with pandas, a chunk at a time, into accepted rows and rejects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pandas.io.parsers import TextFileReader

from rollout.exports.model import (
    ExportChunk,
    ExportError,
    IntArray,
)
from rollout.exports.validate import (
    Check,
    Parsed,
    constant_column,
    customers_frame,
    duplicated_check,
    first_problem,
    malformed_check,
    parse_birth_dates,
    parse_pin_hashes,
    printable_mask,
    stripped_values,
)

if TYPE_CHECKING:
    from rollout.exports import Export


class ChunkReader:
    """Iterates an export's chunks; keeps the running count of lines spanned by quoted fields."""

    def __init__(self, export: Export, chunk_size: int) -> None:
        self.export = export
        self.layout = export._layout
        self.fmt = export.format
        self.chunk_size = chunk_size
        self.extra_lines = 0  # line breaks inside quoted fields of the rows read so far

    def __iter__(self) -> Iterator[ExportChunk]:
        names = self.layout.names
        seen = 0
        # The header is read as row 0 (then dropped) so that pandas knows the full width even if
        # the first chunk holds only short rows; `usecols` makes it ignore surplus fields, which
        # the pre-pass has already counted.
        with pd.read_csv(
            self.export.path,
            sep=self.fmt.delimiter,
            header=None,
            names=list(range(len(names))),
            usecols=list(range(len(names))),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig" if self.fmt.bom else self.fmt.encoding,
            engine="c",
            chunksize=self.chunk_size,
        ) as reader:
            size = self.chunk_size + 1  # the first chunk also holds the header
            while (raw := _next_chunk(reader, size)) is not None:
                size = self.chunk_size
                raw.index = raw.index - 1
                raw = raw[raw.index >= 0]
                seen += len(raw)
                if len(raw):
                    chunk = self._chunk(raw)
                    if len(chunk.rows) or len(chunk.rejects):
                        yield chunk
        if seen != self.layout.scan.records:
            raise ExportError(self.export.path, "inconsistent CSV structure (record count changed)")

    def _chunk(self, raw: pd.DataFrame) -> ExportChunk:
        raw.columns = pd.Index(self.layout.names)
        row_numbers = raw.index.to_numpy(dtype=np.int64)
        lines = self._lines(raw, row_numbers)
        parsed = self._parse(raw)
        reasons, details = first_problem(self._checks(raw, row_numbers, parsed))
        blank = np.isin(row_numbers, self.layout.scan.blank_rows)
        rejected = (reasons != "") & ~blank
        accepted = (reasons == "") & ~blank
        rejects = pd.DataFrame(
            {
                "row": row_numbers[rejected],
                "line": lines[rejected],
                "customer_id": pd.Series(parsed.ids[rejected], dtype=str),
                "reason": pd.Series(reasons[rejected], dtype=str),
                "detail": pd.Series(details[rejected], dtype=str),
            }
        ).set_index(pd.Index(row_numbers[rejected]))
        rows = raw[accepted]
        if self.fmt.hash_column not in rows.columns:
            rows = rows.assign(**{self.fmt.hash_column: pd.Series("", index=rows.index, dtype=str)})
        customers = customers_frame(rows, parsed.subset(accepted), self.fmt)
        return ExportChunk(rows=rows, customers=customers, rejects=rejects)

    def _lines(self, raw: pd.DataFrame, row_numbers: IntArray) -> IntArray:
        """1-based line where each record starts: header lines + rows before + breaks inside."""
        base = self.layout.header_lines + 1 + row_numbers
        if not self.layout.has_quotes:
            return base
        inside = np.zeros(len(raw), dtype=np.int64)
        for column in raw.columns:
            inside += raw[column].str.count("\n").to_numpy(dtype=np.int64)
        before = np.cumsum(inside) - inside + self.extra_lines
        self.extra_lines += int(inside.sum())
        return base + before

    def _parse(self, raw: pd.DataFrame) -> Parsed:
        cmap = self.fmt.column_map
        dates, date_problems = parse_birth_dates(raw[cmap["birth_date"]], self.layout.today)
        if self.fmt.hash_column in self.layout.names:
            hashes, hash_problems = parse_pin_hashes(raw[self.fmt.hash_column])
        else:
            hashes, hash_problems = (
                np.full(len(raw), None, dtype=object),
                constant_column(len(raw), ""),
            )
        return Parsed(
            ids=stripped_values(raw[cmap["customer_id"]]),
            birth_dates=dates,
            date_problems=date_problems,
            pin_hashes=hashes,
            hash_problems=hash_problems,
        )

    def _checks(self, raw: pd.DataFrame, row_numbers: IntArray, parsed: Parsed) -> list[Check]:
        """One (mask, detail) per reason, in the order of `REJECT_REASONS`."""
        n = len(raw)
        ids = parsed.ids
        return [
            malformed_check(row_numbers, self.layout.scan, len(self.layout.names)),
            (ids == "", constant_column(n, "empty customer id")),
            (~printable_mask(ids), constant_column(n, "customer id contains control characters")),
            duplicated_check(ids, self.layout.scan),
            (parsed.date_problems != "", parsed.date_problems),
            (parsed.hash_problems != "", parsed.hash_problems),
        ]


def _next_chunk(reader: TextFileReader, size: int) -> pd.DataFrame | None:
    try:
        return reader.get_chunk(size)
    except StopIteration:
        return None
