"""Write-back: the export as it came, hash column filled, rejected rows out, written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rollout.brands import load_brand
from rollout.exports import Export, ExportFormat, open_export
from rollout.writeback import WritebackWriter, writeback_path
from synthetic import STYLES, Style, plan_sample

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
NEW_HASH = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdG5ld3NhbHQ$" + "A" * 43


def write_back(export: Export, out: Path, chunk_size: int = 64) -> pd.DataFrame:
    """Fills empty hashes with NEW_HASH, writes all chunks; returns the rows as read."""
    read = []
    with WritebackWriter(out, export.format) as writer:
        for chunk in export.chunks(chunk_size):
            rows = chunk.rows.copy()
            column = rows[export.format.hash_column]
            rows[export.format.hash_column] = column.where(column != "", NEW_HASH)
            writer.write(rows)
            read.append(chunk.rows)
    return pd.concat(read)


def all_rows(export: Export) -> tuple[pd.DataFrame, pd.DataFrame]:
    chunks = list(export.chunks())
    return pd.concat([c.rows for c in chunks]), pd.concat([c.rejects for c in chunks])


@pytest.mark.parametrize("style", STYLES)
def test_samples_round_trip(tmp_path: Path, style: Style) -> None:
    brand = load_brand(style)
    source = SAMPLES / f"{style}.csv"
    export = open_export(source, brand)
    out = writeback_path(tmp_path, brand)
    original = write_back(export, out)

    again = open_export(out, brand)
    assert again.format == export.format  # encoding, BOM, delimiter, line ends, header
    rows, rejects = all_rows(again)
    assert rejects.empty  # the rejected rows were left out
    assert (
        len(rows)
        == len(original)
        == len(plan_sample(style).rows) - len(plan_sample(style).rejects())
    )
    others = [c for c in export.format.header if c != export.format.hash_column]
    pd.testing.assert_frame_equal(
        rows[others].reset_index(drop=True), original[others].reset_index(drop=True)
    )
    kept = original[export.format.hash_column] != ""
    hashes = rows[export.format.hash_column].reset_index(drop=True)
    assert (hashes[kept.to_numpy()] == original[export.format.hash_column][kept].to_numpy()).all()
    assert (hashes[~kept.to_numpy()] == NEW_HASH).all()

    raw, written = source.read_bytes(), out.read_bytes()
    assert written.startswith(b"\xef\xbb\xbf") == raw.startswith(b"\xef\xbb\xbf")
    assert (b"\r\n" in written) == (b"\r\n" in raw)
    if export.format.encoding == "cp1252":
        assert "Müller".encode("cp1252") in written and "Müller".encode() not in written


def test_rejected_rows_are_left_out(tmp_path: Path) -> None:
    brand = load_brand("congstar")
    export = open_export(SAMPLES / "congstar.csv", brand)
    _, rejects = all_rows(export)
    out = tmp_path / "wb.csv"
    write_back(export, out)
    text = out.read_bytes().decode("cp1252")
    for customer_id in rejects["customer_id"]:
        if customer_id:
            assert f"\r\n{customer_id};" not in text


def test_awkward_values_read_back_identical(tmp_path: Path) -> None:
    text = (
        "customer_id,first_name,last_name,email,birth_date,notes,legi_pin_hash\n"
        '1,"  spaced  ","Kühn, ""Kuddel""",k@example.com,1970-01-01,"line\nbreak",\n'
        '2,A,B,b@example.com,,"lone\rcarriage return",\n'
        '3,A,B,c@example.com,,"crlf\r\ninside",\n'
        "4,A,B,d@example.com,,,\n"
    )
    source = tmp_path / "in.csv"
    source.write_bytes(text.encode())
    export = open_export(source, load_brand("jamobil"))
    out = tmp_path / "out.csv"
    original = write_back(export, out, chunk_size=2)
    rows, rejects = all_rows(open_export(out, load_brand("jamobil")))
    assert rejects.empty
    others = [c for c in export.format.header if c != "legi_pin_hash"]
    assert rows[others].values.tolist() == original[others].values.tolist()
    assert rows.loc[1, "notes"] == "lone\rcarriage return"


def test_header_is_written_even_without_rows(tmp_path: Path) -> None:
    fmt = _format()
    out = tmp_path / "wb" / "x.csv"
    with WritebackWriter(out, fmt):
        pass
    assert out.read_bytes() == b"\xef\xbb\xbfa;b;legi_pin_hash\r\n"


def test_failure_mid_write_keeps_the_previous_file(tmp_path: Path) -> None:
    fmt = _format()
    out = tmp_path / "x.csv"
    out.write_bytes(b"previous")
    rows = pd.DataFrame({"a": ["1"], "b": ["2"], "legi_pin_hash": ["h"]})
    with pytest.raises(RuntimeError, match="boom"), WritebackWriter(out, fmt) as writer:
        writer.write(rows)
        raise RuntimeError("boom")
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


def test_failure_without_previous_file_leaves_nothing(tmp_path: Path) -> None:
    fmt = _format(encoding="cp1252", bom=False)
    out = tmp_path / "x.csv"
    rows = pd.DataFrame({"a": ["1"], "b": ["\u20ac and \u0142"], "legi_pin_hash": ["h"]})
    with pytest.raises(UnicodeEncodeError), WritebackWriter(out, fmt) as writer:
        writer.write(rows)  # "ł" has no Windows-1252 byte
    assert list(tmp_path.iterdir()) == []


def test_a_rerun_removes_the_temp_files_a_killed_run_left(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    stale = [tmp_path / ".x.csv.k1ll3d.tmp", tmp_path / ".x.csv.d1skfull.tmp"]
    other = tmp_path / ".y.csv.abc.tmp"  # another brand's: not ours to touch
    for path in [*stale, other]:
        path.write_text("half a file")
    with WritebackWriter(out, _format()):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".y.csv.abc.tmp", "x.csv"]


def test_rows_must_have_the_export_columns(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    with pytest.raises(ValueError, match="columns"), WritebackWriter(out, _format()) as writer:
        writer.write(pd.DataFrame({"b": ["1"], "a": ["2"], "legi_pin_hash": [""]}))
    assert list(tmp_path.iterdir()) == []


def _format(encoding: str = "utf-8", bom: bool = True) -> ExportFormat:
    return ExportFormat(
        encoding=encoding,
        bom=bom,
        delimiter=";",
        line_terminator="\r\n",
        header=("a", "b", "legi_pin_hash"),
        column_map={"legi_pin_hash": "legi_pin_hash"},
        hash_column="legi_pin_hash",
    )
