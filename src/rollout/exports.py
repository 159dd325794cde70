"""Reading a brand's CRM export: format detection, validation, and reasons for bad rows.

`open_export` works out how the file is written (encoding, BOM, delimiter, line ends, which header
names the CRM uses), checks that the required columns are there, and makes one streaming pre-pass
over the records; `Export.chunks` then reads the file with pandas in chunks. Memory stays flat
however large the file, except 8 bytes per row for duplicate detection (see `_scan_records`).

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
"""

from __future__ import annotations

import codecs
import csv
import itertools
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.io.parsers import TextFileReader

from rollout.addresses import check_address, clean_name
from rollout.brands import Brand
from rollout.pins import is_pin_hash

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

_BLOCK_BYTES = 1 << 20
_SCAN_BLOCK_ROWS = 50_000
_MAX_HEADER_CHARS = 1 << 20
# Fed to the pre-pass as one more line (the csv module ends a record at the end of each line it is
# given): if it does not come back as a record of its own, a quote was never closed.
_END_MARK = "\x1elegi-pin-end-of-file\x1e"
_DATE_SHAPE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}\.\d{1,2}\.\d{4}")

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
class _Scan:
    """What the pre-pass learnt about the records (all arrays are small except in odd files)."""

    records: int
    duplicate_hashes: UInt64Array  # sorted hashes of customer ids occurring more than once
    duplicate_counts: IntArray  # how often each of them occurs
    malformed_rows: IntArray  # sorted data row numbers with the wrong number of fields
    malformed_fields: IntArray  # their field counts
    blank_rows: IntArray  # data row numbers of blank lines (not records; skipped)


@dataclass(frozen=True)
class _Layout:
    names: tuple[str, ...]  # header as found in the file
    header_lines: int  # physical lines the header takes
    has_quotes: bool  # any '"' in the file: records may span lines
    stat: tuple[int, int]  # size and mtime, to notice a file replaced under our feet
    today: date
    scan: _Scan = field(repr=False)


def export_path(exports_dir: Path, brand: Brand) -> Path:
    return exports_dir / f"{brand.slug}.csv"


def open_export(path: Path, brand: Brand, *, today: date | None = None) -> Export:
    """Detect the format of `path`, check its header and pre-scan it; raises `ExportError`."""
    try:
        stat = path.stat()
        if stat.st_size == 0:
            raise ExportError(path, "empty file")
        encoding, bom, has_quotes = _detect_encoding(path, brand.export.encoding)
        with _open_text(path, encoding, bom) as text:
            delimiter, line_terminator = _sniff(path, text, brand.export.delimiter)
            text.seek(0)
            reader = csv.reader(itertools.chain(text, [_END_MARK]), delimiter=delimiter)
            names, header_lines = _read_header(path, reader)
            fmt = _resolve_format(path, names, brand, encoding, bom, delimiter, line_terminator)
            id_position = names.index(fmt.column_map["customer_id"])
            scan = _scan_records(path, reader, len(names), id_position)
    except OSError as e:
        raise ExportError(path, f"cannot read: {e.strerror or e}") from None
    layout = _Layout(
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

    def __init__(self, path: Path, fmt: ExportFormat, layout: _Layout) -> None:
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
        reader = _ChunkReader(self, chunk_size)
        try:
            yield from reader
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
            raise ExportError(self.path, f"unreadable: {_one_line(str(e))}") from None

    def _check_unchanged(self) -> None:
        try:
            stat = self.path.stat()
        except OSError as e:
            raise ExportError(self.path, f"cannot read: {e.strerror or e}") from None
        if (stat.st_size, stat.st_mtime_ns) != self._layout.stat:
            raise ExportError(self.path, "file changed since it was opened; open it again")


# --- format detection -------------------------------------------------------------------------


def _detect_encoding(path: Path, hint: str | None) -> tuple[str, bool, bool]:
    """(codec, BOM?, contains '"'?): strict UTF-8 if the whole file decodes, else Windows-1252."""
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ExportError(path, "unknown encoding: UTF-16 is not supported (export UTF-8)")
    bom = head.startswith(codecs.BOM_UTF8)
    if hint:
        encoding = _codec_name(path, hint)
        error = _decode_error(path, encoding)
        if error is not None:
            raise ExportError(path, f"does not decode as {hint!r} (brand.toml): {error}")
        return encoding, bom and encoding == "utf-8", _has_quotes(path)
    utf8_error = _decode_error(path, "utf-8")
    if utf8_error is None:
        return "utf-8", bom, _has_quotes(path)
    cp1252_error = _decode_error(path, "cp1252")
    if cp1252_error is None:
        return "cp1252", False, _has_quotes(path)
    raise ExportError(
        path, f"unknown encoding: not UTF-8 ({utf8_error}) nor Windows-1252 ({cp1252_error})"
    )


def _codec_name(path: Path, name: str) -> str:
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise ExportError(path, f"unknown encoding {name!r} in brand.toml") from None
    return "utf-8" if codec == "utf-8-sig" else codec


def _decode_error(path: Path, encoding: str) -> str | None:
    """Why `path` is not valid `encoding`, or None; streams the file through a strict decoder."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    with path.open("rb") as f:
        while block := f.read(_BLOCK_BYTES):
            if b"\x00" in block:
                at = offset + block.index(b"\x00")
                return f"NUL byte at offset {at} (UTF-16 or a binary file?)"
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                bad = block[e.start] if e.start < len(block) else 0
                return f"byte 0x{bad:02x} at offset {offset + e.start}"
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "file ends inside a multi-byte character"
    return None


def _has_quotes(path: Path) -> bool:
    with path.open("rb") as f:
        while block := f.read(_BLOCK_BYTES):
            if b'"' in block:
                return True
    return False


def _open_text(path: Path, encoding: str, bom: bool) -> TextIO:
    return path.open(encoding="utf-8-sig" if bom else encoding, newline="")


def _sniff(path: Path, text: TextIO, hint: str | None) -> tuple[str, str]:
    """(delimiter, line terminator), both judged from the header line."""
    first = text.readline(_MAX_HEADER_CHARS)
    if not first.strip():
        raise ExportError(path, "empty file (no header line)")
    if len(first) >= _MAX_HEADER_CHARS and not first.endswith(("\n", "\r")):
        raise ExportError(path, "first line is longer than 1 MiB: not a CSV export?")
    terminator = "\r\n" if first.endswith("\r\n") else "\n"
    if hint:
        return hint, terminator
    counts = {d: first.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return (best if counts[best] else ","), terminator


def _read_header(path: Path, reader: Iterator[list[str]]) -> tuple[tuple[str, ...], int]:
    header = next(reader, None)
    if not header or header == [_END_MARK]:
        raise ExportError(path, "empty file (no header line)")
    line_num: int = getattr(reader, "line_num", 1)
    return tuple(header), line_num


def _header_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).casefold()


def _resolve_format(
    path: Path,
    names: tuple[str, ...],
    brand: Brand,
    encoding: str,
    bom: bool,
    delimiter: str,
    line_terminator: str,
) -> ExportFormat:
    column_map = _match_columns(path, names, brand)
    header = names
    if HASH_COLUMN not in column_map:
        header = (*names, _appended_hash_column(names, column_map, brand))
    mapped = {c: names[i] for c, i in column_map.items()}
    mapped.setdefault(HASH_COLUMN, header[-1])
    return ExportFormat(
        encoding=encoding,
        bom=bom,
        delimiter=delimiter,
        line_terminator=line_terminator,
        header=header,
        column_map=mapped,
        hash_column=mapped[HASH_COLUMN],
    )


def _appended_hash_column(names: tuple[str, ...], column_map: dict[str, int], brand: Brand) -> str:
    """The brand's own name for the hash column, else German or English like most headers."""
    if HASH_COLUMN in brand.export.columns:
        return brand.export.columns[HASH_COLUMN]
    keys = {c: _header_key(names[i]) for c, i in column_map.items()}
    german = sum(k == _header_key(GERMAN_HEADERS[c]) for c, k in keys.items())
    english = sum(k == _header_key(c) for c, k in keys.items())
    return GERMAN_HEADERS[HASH_COLUMN] if german > english else HASH_COLUMN


def _aliases(path: Path, brand: Brand) -> dict[str, dict[str, str]]:
    """canonical name -> {header key: header as spelt in the message}; brand aliases included."""
    aliases = {
        c: {_header_key(c): c, _header_key(GERMAN_HEADERS[c]): GERMAN_HEADERS[c]}
        for c in CANONICAL_COLUMNS
    }
    for canonical, header in brand.export.columns.items():
        if canonical not in aliases:
            known = ", ".join(CANONICAL_COLUMNS)
            raise ExportError(
                path, f"brand.toml names unknown column {canonical!r} (known: {known})"
            )
        aliases[canonical][_header_key(header)] = header
    return aliases


def _match_columns(path: Path, names: tuple[str, ...], brand: Brand) -> dict[str, int]:
    """canonical name -> position in the header; raises for missing, doubled or ambiguous ones."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ExportError(path, f"duplicate column {_quote_list(duplicates)}")
    aliases = _aliases(path, brand)
    found: dict[str, int] = {}
    for position, name in enumerate(names):
        key = _header_key(name)
        for canonical, spellings in aliases.items():
            if key not in spellings:
                continue
            if canonical in found:
                other = names[found[canonical]]
                raise ExportError(path, f"columns {other!r} and {name!r} both mean {canonical!r}")
            found[canonical] = position
    missing = [c for c in REQUIRED_COLUMNS if c not in found]
    if missing:
        wanted = ", ".join(
            f"{c!r} (or {_quote_list([s for s in aliases[c].values() if s != c])})" for c in missing
        )
        noun = "column" if len(missing) == 1 else "columns"
        raise ExportError(path, f"missing {noun} {wanted}; found: {_quote_list(list(names))}")
    return found


def _quote_list(values: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- pre-pass ---------------------------------------------------------------------------------


def _scan_records(
    path: Path, reader: Iterator[list[str]], n_fields: int, id_position: int
) -> _Scan:
    """One streaming pass with the csv module: field counts, blank lines, duplicate ids.

    Duplicates: every non-empty id is hashed to a uint64 (`pd.util.hash_array`), 8 bytes per row
    are kept until the end, sorted in place, and only the (usually tiny) set of hashes that occur
    more than once survives. That is the accepted memory cost of catching duplicates across
    chunks. A 64-bit collision would reject two distinct ids as duplicates (about 3e-8 for a
    million rows): the safe direction, and visible in the rejects.
    """
    hashes: list[UInt64Array] = []
    malformed: list[tuple[IntArray, IntArray]] = []
    blanks: list[IntArray] = []
    records = 0
    ended = False
    try:
        while block := list(itertools.islice(reader, _SCAN_BLOCK_ROWS)):
            if block[-1] == [_END_MARK]:
                block.pop()
                ended = True
            counts = np.fromiter(map(len, block), dtype=np.int64, count=len(block))
            rows = np.arange(records, records + len(block), dtype=np.int64)
            bad = (counts != n_fields) & (counts != 0)
            malformed.append((rows[bad], counts[bad]))
            blanks.append(rows[counts == 0])
            hashes.append(_id_hashes(_ids_of(block, counts, id_position)))
            records += len(block)
    except csv.Error as e:
        line = getattr(reader, "line_num", "?")
        raise ExportError(path, f"line {line}: {e} (a quote that is never closed?)") from None
    if not ended:
        line = getattr(reader, "line_num", "?")
        raise ExportError(
            path,
            f"a quoted field in data row {records - 1} is never closed (file ends at line {line})",
        )
    duplicate_hashes, duplicate_counts = _duplicates(hashes)
    return _Scan(
        records=records,
        duplicate_hashes=duplicate_hashes,
        duplicate_counts=duplicate_counts,
        malformed_rows=_concat([m[0] for m in malformed]),
        malformed_fields=_concat([m[1] for m in malformed]),
        blank_rows=_concat(blanks),
    )


def _ids_of(block: list[list[str]], counts: IntArray, position: int) -> ObjectArray:
    if len(block) and int(counts.min()) > position:
        ids = list(map(operator.itemgetter(position), block))
    else:
        ids = [r[position] if len(r) > position else "" for r in block]
    return np.array(list(map(str.strip, ids)), dtype=object)


def _id_hashes(ids: ObjectArray) -> UInt64Array:
    """uint64 hashes of the non-empty ids (stripped); the same function serves both passes."""
    present = ids[ids != ""]
    return pd.util.hash_array(present, categorize=False)


def _duplicates(hashes: list[UInt64Array]) -> tuple[UInt64Array, IntArray]:
    everything = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
    hashes.clear()
    everything.sort()
    repeated = everything[1:][everything[1:] == everything[:-1]]
    unique = np.unique(repeated)
    counts = np.searchsorted(everything, unique, "right") - np.searchsorted(everything, unique)
    return unique, counts.astype(np.int64)


def _concat(parts: list[IntArray]) -> IntArray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# --- chunks -----------------------------------------------------------------------------------


class _ChunkReader:
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
        reasons, details = _first_problem(self._checks(raw, row_numbers, parsed))
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
        customers = _customers(rows, parsed.subset(accepted), self.fmt)
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

    def _parse(self, raw: pd.DataFrame) -> _Parsed:
        cmap = self.fmt.column_map
        dates, date_problems = _birth_dates(raw[cmap["birth_date"]], self.layout.today)
        if self.fmt.hash_column in self.layout.names:
            hashes, hash_problems = _pin_hashes(raw[self.fmt.hash_column])
        else:
            hashes, hash_problems = np.full(len(raw), None, dtype=object), _constant(len(raw), "")
        return _Parsed(
            ids=_stripped(raw[cmap["customer_id"]]),
            birth_dates=dates,
            date_problems=date_problems,
            pin_hashes=hashes,
            hash_problems=hash_problems,
        )

    def _checks(self, raw: pd.DataFrame, row_numbers: IntArray, parsed: _Parsed) -> list[_Check]:
        """One (mask, detail) per reason, in the order of `REJECT_REASONS`."""
        n = len(raw)
        ids = parsed.ids
        return [
            _malformed(row_numbers, self.layout.scan, len(self.layout.names)),
            (ids == "", _constant(n, "empty customer id")),
            (~_printable(ids), _constant(n, "customer id contains control characters")),
            _duplicated(ids, self.layout.scan),
            (parsed.date_problems != "", parsed.date_problems),
            (parsed.hash_problems != "", parsed.hash_problems),
        ]


_Check = tuple[BoolArray, ObjectArray]


def _next_chunk(reader: TextFileReader, size: int) -> pd.DataFrame | None:
    try:
        return reader.get_chunk(size)
    except StopIteration:
        return None


@dataclass(frozen=True)
class _Parsed:
    """Values parsed from a chunk's rows, one per row."""

    ids: ObjectArray  # stripped
    birth_dates: ObjectArray  # date or None
    date_problems: ObjectArray  # "" or why the birth date is bad
    pin_hashes: ObjectArray  # valid hash or None
    hash_problems: ObjectArray  # "" or why the hash is bad

    def subset(self, mask: BoolArray) -> _Parsed:
        return _Parsed(
            ids=self.ids[mask],
            birth_dates=self.birth_dates[mask],
            date_problems=self.date_problems[mask],
            pin_hashes=self.pin_hashes[mask],
            hash_problems=self.hash_problems[mask],
        )


def _first_problem(checks: list[_Check]) -> tuple[ObjectArray, ObjectArray]:
    """(reason code or "", detail) per row: the first failing check in `REJECT_REASONS` order."""
    n = len(checks[0][0])
    reasons = _constant(n, "")
    details = _constant(n, "")
    for reason, (mask, detail) in reversed(list(zip(REJECT_REASONS, checks, strict=True))):
        reasons[mask] = reason  # earlier reasons overwrite later ones
        details[mask] = detail[mask]
    return reasons, details


def _constant(n: int, value: str) -> ObjectArray:
    return np.full(n, value, dtype=object)


def _printable(values: ObjectArray) -> BoolArray:
    return np.fromiter(map(str.isprintable, values), dtype=bool, count=len(values))


def _malformed(row_numbers: IntArray, scan: _Scan, n_fields: int) -> _Check:
    n = len(row_numbers)
    if not len(scan.malformed_rows):
        return np.zeros(n, dtype=bool), _constant(n, "")
    position = np.minimum(
        np.searchsorted(scan.malformed_rows, row_numbers), len(scan.malformed_rows) - 1
    )
    hit = scan.malformed_rows[position] == row_numbers
    detail = _constant(n, "")
    detail[hit] = [f"{k} fields, expected {n_fields}" for k in scan.malformed_fields[position[hit]]]
    return hit, detail


def _duplicated(ids: ObjectArray, scan: _Scan) -> _Check:
    n = len(ids)
    if not len(scan.duplicate_hashes):
        return np.zeros(n, dtype=bool), _constant(n, "")
    hashes = np.zeros(n, dtype=np.uint64)
    present = ids != ""
    hashes[present] = _id_hashes(ids)
    position = np.minimum(
        np.searchsorted(scan.duplicate_hashes, hashes), len(scan.duplicate_hashes) - 1
    )
    hit = present & (scan.duplicate_hashes[position] == hashes)
    detail = _constant(n, "")
    detail[hit] = [f"customer id occurs {k} times" for k in scan.duplicate_counts[position[hit]]]
    return hit, detail


def _map_unique(values: pd.Series, function: Callable[[str], Any]) -> ObjectArray:
    """`function` applied once per distinct value (names and dates repeat a lot)."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    mapped = np.empty(len(uniques), dtype=object)
    mapped[:] = [function(u) for u in uniques]
    return mapped[codes] if len(codes) else np.empty(0, dtype=object)


def _birth_dates(values: pd.Series, today: date) -> tuple[ObjectArray, ObjectArray]:
    """(date or None, problem or "") per row; each distinct value is parsed once, vectorised."""
    codes, texts = pd.factorize(_stripped(values))
    index = pd.Index(texts, dtype=object)
    iso = pd.to_datetime(index, format="%Y-%m-%d", errors="coerce")
    parsed = iso.where(iso.notna(), pd.to_datetime(index, format="%d.%m.%Y", errors="coerce"))
    empty = np.asarray(texts == "", dtype=bool)
    invalid = np.asarray(parsed.isna(), dtype=bool) & ~empty
    future = np.asarray(parsed > pd.Timestamp(today), dtype=bool)
    dates = np.asarray(parsed.date, dtype=object)  # NaT stays NaT: replaced below
    dates[invalid | empty | future] = None
    problems = _constant(len(texts), "")
    for i in np.flatnonzero(invalid | future):  # few: a loop is fine
        problems[i] = _date_problem(str(texts[i]), bool(future[i]))
    if not len(codes):
        return np.empty(0, dtype=object), np.empty(0, dtype=object)
    return dates[codes], problems[codes]


def _date_problem(text: str, future: bool) -> str:
    shown = repr(text[:40])
    if future:
        return f"in the future: {shown}"
    if _DATE_SHAPE.fullmatch(text):
        return f"no such date: {shown}"
    return f"not a date (YYYY-MM-DD or DD.MM.YYYY): {shown}"


def _stripped(values: pd.Series) -> ObjectArray:
    """The values without surrounding whitespace (plain `str.strip` is ~3x faster than `.str`)."""
    array = values.to_numpy(dtype=object)
    out = np.empty(len(array), dtype=object)
    out[:] = list(map(str.strip, array))
    return out


def _pin_hashes(values: pd.Series) -> tuple[ObjectArray, ObjectArray]:
    """(valid hash or None, problem or "") per row; the value is never shown: it may be a PIN."""
    stripped = _stripped(values)
    present = np.flatnonzero(stripped != "")
    valid = np.fromiter(map(is_pin_hash, stripped[present]), dtype=bool, count=len(present))
    hashes = np.full(len(stripped), None, dtype=object)
    hashes[present[valid]] = stripped[present[valid]]
    problems = _constant(len(stripped), "")
    bad = present[~valid]
    problems[bad] = [f"not a Legi-PIN hash ({len(v)} characters, not shown)" for v in stripped[bad]]
    return hashes, problems


def _customers(rows: pd.DataFrame, parsed: _Parsed, fmt: ExportFormat) -> pd.DataFrame:
    cmap = fmt.column_map
    checked = [check_address(v) for v in rows[cmap["email"]].to_numpy(dtype=object)]
    index = rows.index

    def column(values: Any, dtype: Any) -> pd.Series:
        series: pd.Series = pd.Series(values, index=index, dtype=dtype)
        return series

    return pd.DataFrame(
        {
            "customer_id": column(parsed.ids, str),
            "first_name": column(_map_unique(rows[cmap["first_name"]], clean_name), str),
            "last_name": column(_map_unique(rows[cmap["last_name"]], clean_name), str),
            "email": column([c[0] for c in checked], str),
            "email_problem": column([c[1] for c in checked], object),
            "birth_date": column(parsed.birth_dates, object),
            "pin_hash": column(parsed.pin_hashes, object),
        },
        index=index,
    )
