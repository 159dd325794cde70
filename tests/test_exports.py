"""Reading CRM exports: formats, reject reasons, duplicates across chunks, whole-file errors."""

from __future__ import annotations

import dataclasses
import os
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rollout.brands import Brand, ExportHints, load_brand
from rollout.exports import (
    REJECT_REASONS,
    ExportError,
    export_path,
    open_export,
)
from synthetic import HASH_PLACEHOLDER, SPECS, STYLES, Style, plan_sample

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
TODAY = date(2024, 6, 1)
HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$"
    "RdescudvJCsgt3ub+b+dWRWJTmaaJObG3dAkRWVu/Zc"
)
EN = "customer_id,first_name,last_name,email,birth_date,legi_pin_hash"
DE = "Kundennummer;Vorname;Nachname;E-Mail;Geburtsdatum;Legi-PIN-Hash"


@pytest.fixture
def brand() -> Brand:
    return load_brand("congstar")


def hinted(brand: Brand, **hints: Any) -> Brand:
    return dataclasses.replace(brand, export=ExportHints(**hints))


def write(
    tmp_path: Path, text: str, *, encoding: str = "utf-8", newline: str = "\n", name: str = "x"
) -> Path:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def read(path: Path, brand: Brand, chunk_size: int = 50_000) -> tuple[pd.DataFrame, ...]:
    """All chunks of an export, concatenated: (rows, customers, rejects)."""
    chunks = list(open_export(path, brand, today=TODAY).chunks(chunk_size))
    if not chunks:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    return (
        pd.concat([c.rows for c in chunks]),
        pd.concat([c.customers for c in chunks]),
        pd.concat([c.rejects for c in chunks]),
    )


def reasons(rejects: pd.DataFrame) -> dict[int, str]:
    return dict(zip(rejects["row"], rejects["reason"], strict=True))


def error_of(path: Path, brand: Brand) -> str:
    with pytest.raises(ExportError) as caught:
        open_export(path, brand, today=TODAY)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


# --- the samples --------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_sample_formats_are_detected(style: Style) -> None:
    spec = SPECS[style]
    export = open_export(export_path(SAMPLES, load_brand(style)), load_brand(style), today=TODAY)
    fmt = export.format
    assert fmt.encoding == ("cp1252" if spec.encoding == "cp1252" else "utf-8")
    assert fmt.bom is (spec.encoding == "utf-8-sig")
    assert (fmt.delimiter, fmt.line_terminator) == (spec.delimiter, spec.line_terminator)
    assert fmt.header == spec.header
    assert fmt.hash_column == spec.header[spec.fields.index("legi_pin_hash")]
    assert set(fmt.column_map) == {"customer_id", "first_name", "last_name", "email"} | {
        "birth_date",
        "legi_pin_hash",
    }


@pytest.mark.parametrize("style", STYLES)
def test_samples_read_as_the_generator_planned(style: Style) -> None:
    """Expectations come from the generator's plan (KNOWN_CASES), not from counted rows."""
    plan = plan_sample(style)
    rows, customers, rejects = read(SAMPLES / f"{style}.csv", load_brand(style), chunk_size=97)
    assert reasons(rejects) == plan.rejects()
    assert set(rejects["reason"]) == set(REJECT_REASONS)  # every reason is in every sample
    accepted = [i for i, r in enumerate(plan.rows) if not r.reject]
    assert list(customers.index) == accepted == list(rows.index)
    problems = customers["email_problem"].dropna()
    assert problems.to_dict() == {
        i: r.email_problem for i, r in enumerate(plan.rows) if r.email_problem
    }
    hashed = customers.index[customers["pin_hash"].notna()]
    assert list(hashed) == [i for i in accepted if plan.rows[i].hashed]
    spec = plan.spec
    for i in accepted[:60]:  # the file holds exactly what was planned
        expected = [v for v in plan.rows[i].values if v != HASH_PLACEHOLDER]
        assert [v for v in rows.loc[i] if not v.startswith("$argon2id$")] == expected
    assert customers.loc[accepted, "customer_id"].tolist() == [
        plan.rows[i].values[spec.column["customer_id"]] for i in accepted
    ]


def test_sample_customers_are_sanitised() -> None:
    plan = plan_sample("pennymobil")
    _, customers, _ = read(SAMPLES / "pennymobil.csv", load_brand("pennymobil"))
    by_case = {r.case: i for i, r in enumerate(plan.rows) if r.case}
    assert customers.loc[by_case["encoded-word attack in first name"], "first_name"] == (
        "utf-8?q?Max=0ABcc:evil@example.com?="
    )
    assert customers.loc[by_case["line break and spaces in last name"], "last_name"] == (
        "Müller Bcc: evil@example.com"
    )
    assert (
        customers.loc[by_case["script tag in first name"], "first_name"]
        == "<script>alert(1)</script>"
    )
    assert (
        customers.loc[by_case["upper-case address, spaces around"], "email"]
        == f"SABINE.KOCH@{SPECS['pennymobil'].domains[0]}"
    )
    injected = customers.loc[by_case["header injection in e-mail"]]
    assert (injected["email"], injected["email_problem"]) == ("", "bad_email")
    assert customers.loc[by_case["internationalised domain"], "email"].startswith("kontakt@xn--")


# --- reasons ------------------------------------------------------------------------------------


def test_every_reject_reason(tmp_path: Path, brand: Brand) -> None:
    path = write(
        tmp_path,
        f"{EN}\n"
        "1,Max,Muster,max@example.com,1980-01-02,\n"
        "2,Too,Many,x@example.com,1980-01-02,,surplus\n"  # malformed_row
        "3,Too,Few\n"  # malformed_row
        " ,Kein,Id,k@example.com,1980-01-02,\n"  # missing_customer_id
        "4\x0b5,Ctrl,Id,c@example.com,1980-01-02,\n"  # bad_customer_id
        "6,Dup,One,d@example.com,1980-01-02,\n"  # duplicate_customer_id
        "6,Dup,Two,d@example.com,1980-01-02,\n"  # duplicate_customer_id
        "7,Bad,Date,b@example.com,1980-02-31,\n"  # bad_birth_date
        "8,Plain,Pin,p@example.com,1980-01-02,4711\n"  # bad_pin_hash
        f'9,Kept,Hash,h@example.com,1980-01-02,"{HASH}"\n',  # quoted: the hash holds commas
    )
    rows, customers, rejects = read(path, brand)
    assert reasons(rejects) == {
        1: "malformed_row",
        2: "malformed_row",
        3: "missing_customer_id",
        4: "bad_customer_id",
        5: "duplicate_customer_id",
        6: "duplicate_customer_id",
        7: "bad_birth_date",
        8: "bad_pin_hash",
    }
    assert set(rejects["reason"]) == set(REJECT_REASONS)
    assert list(rejects.columns) == ["row", "line", "customer_id", "reason", "detail"]
    assert list(rejects.index) == list(rejects["row"])
    assert rejects.loc[1, "detail"] == "7 fields, expected 6"
    assert rejects.loc[2, "detail"] == "3 fields, expected 6"
    assert rejects.loc[5, "detail"] == "customer id occurs 2 times"
    assert "4711" not in rejects.loc[8, "detail"]  # a plaintext PIN is never echoed
    assert list(customers["customer_id"]) == ["1", "9"]
    assert customers["pin_hash"].tolist() == [None, HASH]
    assert list(rows.columns) == EN.split(",")


def test_first_problem_wins(tmp_path: Path, brand: Brand) -> None:
    path = write(
        tmp_path,
        f"{EN}\n"
        ",No,Id,x@example.com,1980-02-31,4711\n"  # missing id > bad date > bad hash
        "5,Dup,A,x@example.com,1980-02-31,4711\n"  # duplicate > bad date
        "5,Dup,B,x@example.com,1980-01-01,\n"
        "6,Bad,Both,x@example.com,2999-01-01,4711\n",  # bad date > bad hash
    )
    assert reasons(read(path, brand)[2]) == {
        0: "missing_customer_id",
        1: "duplicate_customer_id",
        2: "duplicate_customer_id",
        3: "bad_birth_date",
    }
    assert REJECT_REASONS.index("missing_customer_id") < REJECT_REASONS.index("bad_pin_hash")


def test_duplicates_across_chunk_boundaries_reject_every_row(tmp_path: Path, brand: Brand) -> None:
    lines = [EN]
    ids = ["1", "2", "3", "1", "4", "5", "3", "6", "1", " 5 "]  # 1 three times, 3 and 5 twice
    lines += [f"{i},A,B,a@example.com,1980-01-01," for i in ids]
    path = write(tmp_path, "\n".join(lines) + "\n")
    _, customers, rejects = read(path, brand, chunk_size=2)
    assert reasons(rejects) == {r: "duplicate_customer_id" for r in (0, 2, 3, 5, 6, 8, 9)}
    assert rejects.loc[8, "detail"] == "customer id occurs 3 times"
    assert sorted(customers["customer_id"]) == ["2", "4", "6"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1984-02-29", date(1984, 2, 29)),
        ("29.02.1984", date(1984, 2, 29)),
        ("01.02.1970", date(1970, 2, 1)),
        ("1.2.1970", date(1970, 2, 1)),
        (" 1970-02-01 ", date(1970, 2, 1)),
        ("", None),
    ],
)
def test_valid_birth_dates(tmp_path: Path, brand: Brand, text: str, expected: date | None) -> None:
    path = write(tmp_path, f"{EN}\n1,A,B,a@example.com,{text},\n")
    _, customers, rejects = read(path, brand)
    assert rejects.empty
    assert customers.loc[0, "birth_date"] == expected


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("31.02.1980", "no such date"),
        ("1980-02-31", "no such date"),
        ("29.02.1983", "no such date"),
        ("2024-06-02", "in the future"),  # TODAY + 1
        ("02.06.2099", "in the future"),
        ("unbekannt", "not a date"),
        ("01.02.80", "not a date"),
        ("1980/02/01", "not a date"),
    ],
)
def test_bad_birth_dates(tmp_path: Path, brand: Brand, text: str, detail: str) -> None:
    path = write(tmp_path, f"{EN}\n1,A,B,a@example.com,{text},\n")
    _, customers, rejects = read(path, brand)
    assert customers.empty
    assert rejects.loc[0, "reason"] == "bad_birth_date"
    assert rejects.loc[0, "detail"].startswith(detail)


def test_addresses_and_names_in_customers(tmp_path: Path, brand: Brand) -> None:
    path = write(
        tmp_path,
        f"{EN}\n"
        '1, Jürgen ,"Groß\nBcc: x@example.com",JUERGEN@EXAMPLE.COM,,\n'
        '2,=?utf-8?q?A=0ABcc:e@example.com?=,B,"a@example.com\r\nBcc: e@example.com",,\n'
        "3,A,B,,,\n"
        "4,A,B,max.mustermann@,,\n",
    )
    _, customers, _ = read(path, brand)
    assert customers[["first_name", "last_name"]].values.tolist() == [
        ["Jürgen", "Groß Bcc: x@example.com"],
        ["utf-8?q?A=0ABcc:e@example.com?=", "B"],
        ["A", "B"],
        ["A", "B"],
    ]
    assert customers["email"].tolist() == ["JUERGEN@example.com", "", "", ""]
    assert customers["email_problem"].tolist() == [None, "bad_email", "missing_email", "bad_email"]
    assert list(customers.columns) == [
        *("customer_id", "first_name", "last_name", "email", "email_problem"),
        *("birth_date", "pin_hash"),
    ]


# --- formats ------------------------------------------------------------------------------------


def test_cp1252_semicolons_crlf_german_headers(tmp_path: Path, brand: Brand) -> None:
    text = (
        "Kundennummer;Vorname;Nachname;E-Mail;Geburtsdatum;Tarif\n"
        "1;Jürgen;Weiß;j@example.com;29.02.1984;Flat – 10 €\n"
    )
    path = write(tmp_path, text, encoding="cp1252", newline="\r\n")
    export = open_export(path, brand, today=TODAY)
    fmt = export.format
    assert (fmt.encoding, fmt.bom, fmt.delimiter, fmt.line_terminator) == (
        "cp1252",
        False,
        ";",
        "\r\n",
    )
    assert fmt.header[-1] == fmt.hash_column == "Legi-PIN-Hash"  # appended, German style
    rows, customers, _ = read(path, brand)
    assert rows.loc[0].tolist() == [
        "1",
        "Jürgen",
        "Weiß",
        "j@example.com",
        "29.02.1984",
        "Flat – 10 €",
        "",
    ]
    assert customers.loc[0, "birth_date"] == date(1984, 2, 29)


def test_utf8_bom_commas_english_headers_quoted_newlines(tmp_path: Path, brand: Brand) -> None:
    text = (
        "\ufeffcustomer_id,first_name,last_name,email,birth_date,notes\n"
        '1,Zoë,Groß,z@example.com,1990-01-01,"Hauptstraße 1\n50667 Köln"\n'
        '2,"Anna, Maria","Kühn ""die Zweite""",a@example.com,1991-02-03,\n'
        '3,Max,Muster,m@example.com,1992-03-04,"a\nb\nc"\n'
        "4,Last,Line,l@example.com,1993-04-05,no newline at the end"
    )
    path = write(tmp_path, text)
    export = open_export(path, brand, today=TODAY)
    assert (export.format.encoding, export.format.bom, export.format.delimiter) == (
        "utf-8",
        True,
        ",",
    )
    assert export.format.hash_column == "legi_pin_hash"  # appended, English style
    rows, _, _ = read(path, brand, chunk_size=1)
    assert rows["notes"].tolist() == [
        "Hauptstraße 1\n50667 Köln",
        "",
        "a\nb\nc",
        "no newline at the end",
    ]
    assert rows.loc[1, "first_name"] == "Anna, Maria"
    assert rows.loc[1, "last_name"] == 'Kühn "die Zweite"'
    assert rows.columns[0] == "customer_id"  # no BOM left in the first header


def test_line_numbers_count_quoted_line_breaks(tmp_path: Path, brand: Brand) -> None:
    text = (
        f"{EN},notes\n"
        '1,A,B,a@example.com,,,"one\ntwo"\n'  # lines 2-3
        "2,A,B,a@example.com,31.02.1980,,x\n"  # line 4
        '3,A,B,a@example.com,,,"x\r\ny\nz"\n'  # lines 5-7
        "\n"  # line 8: blank, skipped
        ",A,B,a@example.com,,,x\n"  # line 9
    )
    path = write(tmp_path, text, newline="\r\n")
    for chunk_size in (1, 2, 50):
        _, _, rejects = read(path, brand, chunk_size)
        assert rejects[["row", "line", "reason"]].values.tolist() == [
            [1, 4, "bad_birth_date"],
            [4, 9, "missing_customer_id"],
        ]


def test_header_names_match_loosely_and_other_columns_are_kept(
    tmp_path: Path, brand: Brand
) -> None:
    path = write(
        tmp_path,
        " KUNDENNUMMER ;vorname;Nach name;e_mail;GEBURTSDATUM;legi pin hash;Notiz\n"
        "1;A;B;a@example.com;01.01.1970;;  spaces kept  \n",
    )
    rows, customers, _ = read(path, brand)
    export = open_export(path, brand, today=TODAY)
    assert export.format.column_map["customer_id"] == " KUNDENNUMMER "
    assert export.format.hash_column == "legi pin hash"
    assert rows.loc[0, "Notiz"] == "  spaces kept  "
    assert customers.loc[0, "customer_id"] == "1"


def test_brand_aliases_and_hints(tmp_path: Path, brand: Brand) -> None:
    text = "KdNr|Rufname|Familienname|Mail|Geb\n1|A|B|a@example.com|1970-01-01\n"
    path = write(tmp_path, text, encoding="cp1252")
    custom = hinted(
        brand,
        delimiter="|",
        encoding="windows-1252",
        columns={
            "customer_id": "KdNr",
            "first_name": "Rufname",
            "last_name": "Familienname",
            "email": "Mail",
            "birth_date": "Geb",
        },
    )
    export = open_export(path, custom, today=TODAY)
    assert (export.format.delimiter, export.format.encoding) == ("|", "cp1252")
    assert export.format.header[-1] == "legi_pin_hash"  # neither German nor English: English
    named = hinted(brand, delimiter="|", columns={**custom.export.columns, "legi_pin_hash": "PIN"})
    assert open_export(path, named).format.header[-1] == "PIN"  # the brand's name for it
    _, customers, _ = read(path, custom)
    assert customers.loc[0, "email"] == "a@example.com"


def test_plain_utf8_without_bom_and_semicolon_sniffing(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, f"{DE}\n1;Jörg;Groß;j@example.com;1970-01-01;\n")
    export = open_export(path, brand, today=TODAY)
    assert (export.format.encoding, export.format.bom, export.format.delimiter) == (
        "utf-8",
        False,
        ";",
    )
    assert export.format.header == tuple(DE.split(";"))


def test_blank_lines_are_not_records(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, f"{EN}\n\n1,A,B,a@example.com,,\n\n\n2,A,B,a@example.com,,\n\n")
    export = open_export(path, brand, today=TODAY)
    assert export.records == 2
    rows, _, rejects = read(path, brand, chunk_size=2)
    assert rows["customer_id"].tolist() == ["1", "2"] and rejects.empty


def test_header_only_export_has_no_chunks(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, EN)
    assert list(open_export(path, brand).chunks()) == []


# --- whole-file errors --------------------------------------------------------------------------


def test_missing_column_names_file_and_alias(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, "Kundennummer;Vorname;Nachname;E-Mail\n1;A;B;a@example.com\n")
    message = error_of(path, brand)
    assert "missing column 'birth_date' (or 'Geburtsdatum'); found: 'Kundennummer'" in message


def test_unknown_encoding(tmp_path: Path, brand: Brand) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(f"{EN}\n1,A,B\x81,a@example.com,,\n".encode("latin-1"))
    assert "unknown encoding: not UTF-8 (byte 0x81" in error_of(path, brand)


def test_utf16_is_refused(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, f"{EN}\n", encoding="utf-16")
    assert "UTF-16" in error_of(path, brand)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\n", b"   \r\n"])
def test_empty_file(tmp_path: Path, brand: Brand, content: bytes) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    assert "empty file" in error_of(path, brand)


def test_missing_file(tmp_path: Path, brand: Brand) -> None:
    assert "cannot read" in error_of(tmp_path / "nope.csv", brand)


def test_unterminated_quote(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, f'{EN}\n1,A,B,a@example.com,,\n2,"A,B,a@example.com,,\n3,A,B,c,,\n')
    assert "never closed" in error_of(path, brand)


def test_ambiguous_and_duplicate_columns(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, "customer_id,Kundennummer,first_name,last_name,email,birth_date\n")
    assert "both mean 'customer_id'" in error_of(path, brand)
    path = write(tmp_path, f"{EN},x,x\n")
    assert "duplicate column 'x'" in error_of(path, brand)


def test_unknown_column_in_brand_settings(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, f"{EN}\n")
    assert "unknown column 'phone'" in error_of(path, hinted(brand, columns={"phone": "Telefon"}))


def test_wrong_encoding_hint(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, f"{EN}\n1,Jürgen,B,a@example.com,,\n", encoding="cp1252")
    assert "does not decode as 'utf-8'" in error_of(path, hinted(brand, encoding="utf-8"))


def test_file_replaced_after_opening(tmp_path: Path, brand: Brand) -> None:
    path = write(tmp_path, f"{EN}\n1,A,B,a@example.com,,\n")
    export = open_export(path, brand)
    path.write_text(f"{EN}\n1,A,B,a@example.com,,\n2,A,B,a@example.com,,\n")
    os.utime(path, ns=(1, 1))
    with pytest.raises(ExportError, match="changed since it was opened"):
        list(export.chunks())
