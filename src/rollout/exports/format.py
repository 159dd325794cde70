"""Format detection: encoding, BOM, delimiter, line ends, and which header names the CRM uses."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rollout.brands import Brand
from rollout.exports.model import (
    BLOCK_BYTES,
    CANONICAL_COLUMNS,
    END_MARK,
    GERMAN_HEADERS,
    HASH_COLUMN,
    MAX_HEADER_CHARS,
    REQUIRED_COLUMNS,
    ExportError,
    ExportFormat,
)


def detect_encoding(path: Path, hint: str | None) -> tuple[str, bool, bool]:
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
        while block := f.read(BLOCK_BYTES):
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
        while block := f.read(BLOCK_BYTES):
            if b'"' in block:
                return True
    return False


def open_text(path: Path, encoding: str, bom: bool) -> TextIO:
    return path.open(encoding="utf-8-sig" if bom else encoding, newline="")


def sniff(path: Path, text: TextIO, hint: str | None) -> tuple[str, str]:
    """(delimiter, line terminator), both judged from the header line."""
    first = text.readline(MAX_HEADER_CHARS)
    if not first.strip():
        raise ExportError(path, "empty file (no header line)")
    if len(first) >= MAX_HEADER_CHARS and not first.endswith(("\n", "\r")):
        raise ExportError(path, "first line is longer than 1 MiB: not a CSV export?")
    terminator = "\r\n" if first.endswith("\r\n") else "\n"
    if hint:
        return hint, terminator
    return guess_delimiter(first), terminator


def guess_delimiter(header_line: str) -> str:
    """`;`, `,` or tab, whichever the header line holds most of (`,` if none): CRM exports and
    the bounce lists of mail providers are read alike."""
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def decode_small(data: bytes) -> str:
    """A small CRM-style file as text, by the same rule as exports: UTF-8 (with or without a
    BOM), else Windows-1252 (spreadsheets saved on Windows); undecodable bytes are replaced."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def read_header(path: Path, reader: Iterator[list[str]]) -> tuple[tuple[str, ...], int]:
    header = next(reader, None)
    if not header or header == [END_MARK]:
        raise ExportError(path, "empty file (no header line)")
    line_num: int = getattr(reader, "line_num", 1)
    return tuple(header), line_num


def _header_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).casefold()


def resolve_format(
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
