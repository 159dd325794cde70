"""Synthetic CRM exports: the committed samples, and large files for benchmarks.

Test and benchmark tooling, not part of the product (the wheel does not ship it). Everything is
seeded, so the same call writes the same bytes. From the repository root:

    .venv/bin/python tools/synthetic.py samples data/samples
    .venv/bin/python tools/synthetic.py export /tmp/congstar.csv --rows 1000000 --style congstar

Tests import it as `synthetic` (pytest puts tools/ on sys.path), benchmarks through
bench/_common.py.

Three styles, one per brand, each written the way that brand's CRM dumps it:

- ``congstar``: German headers, ``;``, Windows-1252, DD.MM.YYYY, CRLF, extra column ``Tarif``;
- ``jamobil``: English headers, ``,``, UTF-8 with BOM, ISO dates, LF, a multi-line quoted
  ``postal_address``;
- ``pennymobil``: German headers, ``,``, UTF-8 without BOM, ISO and German dates mixed, LF,
  extra column ``Filiale`` after the hash column.

Samples (`plan_sample` / `write_sample`) hold a few hundred customers plus `KNOWN_CASES`: one row
per reject reason and per kind of unreachable or hostile customer, each with the outcome the
reader must produce; tests compare the committed files with the plan. Pre-existing hashes are real
argon2id hashes of random PINs, at OWASP's minimum cost (t=2, m=19 MiB, p=1: what a real
export holds) with seeded salts (their PINs are unknown).

Large exports (`write_synthetic_export`) are built with numpy in blocks and streamed to disk; their
pre-existing hashes come from a small pool of real argon2id hashes, reused (it is test data).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import numpy.typing as npt
import pandas as pd
from argon2.low_level import Type, hash_secret

from rollout.exports import CANONICAL_COLUMNS

Style = Literal["congstar", "jamobil", "pennymobil"]
STYLES: tuple[Style, ...] = ("congstar", "jamobil", "pennymobil")

# Logical fields (the reader's canonical names); a style maps them to its own header names.
ID, FIRST, LAST, EMAIL, BIRTH, HASH = CANONICAL_COLUMNS
EXTRA = "extra"
HASH_PLACEHOLDER = "<argon2id hash>"  # in a plan: replaced by a real hash when written


@dataclass(frozen=True)
class StyleSpec:
    name: Style
    fields: tuple[str, ...]  # logical field per column, in file order
    header: tuple[str, ...]
    delimiter: str
    encoding: str  # "utf-8-sig" writes a BOM
    line_terminator: str
    dates: Literal["german", "iso", "mixed"]
    id_prefix: str
    extra_values: tuple[str, ...]
    domains: tuple[str, ...]  # each brand its own: no customer of two brands shares an address

    @property
    def column(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.fields)}


_TARIFFS = (
    "congstar Allnet Flat S",
    "congstar Allnet Flat M",
    "congstar Allnet Flat L",
    "Prepaid wie ich will",
    "Fair Flat – 10 € Rabatt",
    "Homespot 100",
)
_STREETS = (
    "Hauptstraße",
    "Bahnhofstraße",
    "Schloßallee",
    "Am Gänsemarkt",
    "Königsweg",
    "Mühlenstraße",
    "Lindenstraße",
    "Rosenstraße",
)
_CITIES = (
    ("50667", "Köln"),
    ("80331", "München"),
    ("40213", "Düsseldorf"),
    ("23552", "Lübeck"),
    ("02826", "Görlitz"),
    ("10115", "Berlin"),
    ("20095", "Hamburg"),
    ("70173", "Stuttgart"),
)
_BRANCHES = (
    "PENNY Köln-Ehrenfeld",
    "PENNY München-Giesing",
    "PENNY Berlin, Alexanderplatz",
    "PENNY Düsseldorf-Bilk",
    "PENNY Hamburg-Altona",
    "PENNY Lübeck, Innenstadt",
)

SPECS: dict[Style, StyleSpec] = {
    "congstar": StyleSpec(
        name="congstar",
        fields=(ID, FIRST, LAST, EMAIL, BIRTH, EXTRA, HASH),
        header=(
            *("Kundennummer", "Vorname", "Nachname", "E-Mail", "Geburtsdatum"),
            *("Tarif", "Legi-PIN-Hash"),
        ),
        delimiter=";",
        encoding="cp1252",
        line_terminator="\r\n",
        dates="german",
        id_prefix="10",
        extra_values=_TARIFFS,
        domains=("example.com", "mail.example.com"),
    ),
    "jamobil": StyleSpec(
        name="jamobil",
        fields=(ID, FIRST, LAST, EMAIL, BIRTH, EXTRA, HASH),
        header=(
            *("customer_id", "first_name", "last_name", "email", "birth_date"),
            *("postal_address", "legi_pin_hash"),
        ),
        delimiter=",",
        encoding="utf-8-sig",
        line_terminator="\n",
        dates="iso",
        id_prefix="JM",
        extra_values=tuple(
            f"{street} {1 + 7 * i % 90}\n{plz} {city}"
            for i, (street, (plz, city)) in enumerate((s, c) for s in _STREETS for c in _CITIES)
        ),
        domains=("example.org", "post.example.org"),
    ),
    "pennymobil": StyleSpec(
        name="pennymobil",
        fields=(ID, FIRST, LAST, EMAIL, BIRTH, HASH, EXTRA),
        header=(
            *("Kundennummer", "Vorname", "Nachname", "E-Mail", "Geburtsdatum"),
            *("Legi-PIN-Hash", "Filiale"),
        ),
        delimiter=",",
        encoding="utf-8",
        line_terminator="\n",
        dates="mixed",
        id_prefix="PM",
        extra_values=_BRANCHES,
        domains=("example.net", "web.example.net"),
    ),
}

# All within Windows-1252, so congstar's export can hold them.
FIRST_NAMES = (
    "Jürgen", "Jörg", "Björn", "Sören", "Günther", "Käthe", "Max", "Anna", "Lena", "Lukas",
    "Jonas", "Leon", "Marie", "Sophie", "Hannah", "Emma", "Mia", "Paul", "Felix", "Finn",
    "Tobias", "Stefan", "Andreas", "Michael", "Thomas", "Sabine", "Ursula", "Renate", "Brigitte",
    "Gisela", "Hans-Peter", "Karl-Heinz", "Heinz", "Klaus", "Wolfgang", "Uwe", "Dörte", "Zoë",
    "Renée", "José", "Ömer", "Françoise", "Mehmet", "Elif", "Katarzyna", "Ingrid", "Jens", "Maik",
    "Mandy", "Jana", "Birgit", "Gerd", "Helmut", "Frauke", "Hauke", "Malte", "Nele", "Greta",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hartmann", "Lange", "Schmitz", "Krause",
    "Lehmann", "Köhler", "Herrmann", "König", "Walter", "Huber", "Kaiser", "Fuchs", "Möller",
    "Weiß", "Jung", "Hahn", "Vogel", "Friedrich", "Keller", "Günther", "Berger", "Böhm", "Krämer",
    "Jäger", "Groß", "Voß", "Strauß", "Öztürk", "Çelik", "Nowak", "Kühn", "Dörfler", "Mößner",
    "Lüdenscheidt", "von Bülow", "de la Cruz", "Schulte-Öhlmann", "Bäcker",
)  # fmt: skip
DOMAINS = (
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "post.example.org",
    "web.example.net",
)
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", " ": "", "'": ""})
_OLDEST, _YOUNGEST = date(1940, 1, 1), date(2006, 12, 31)
_ARGON2 = {"time_cost": 2, "memory_cost": 19_456, "parallelism": 1, "hash_len": 32}


def argon2id_hash(pin: str, salt: bytes) -> str:
    """A real argon2id hash at OWASP's minimum cost with a given salt (deterministic test data)."""
    return hash_secret(pin.encode(), salt, type=Type.ID, **_ARGON2).decode("ascii")


def email_local(first: str, last: str) -> str:
    """``jürgen``, ``groß`` -> ``juergen.gross``: what a German address usually looks like."""
    text = f"{first}.{last}".lower().translate(_TRANSLITERATION)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return text


def format_date(year: int, month: int, day: int, style: Literal["german", "iso"]) -> str:
    """Formats without checking, so impossible dates such as 31.02. can be written too."""
    return (
        f"{day:02d}.{month:02d}.{year:04d}"
        if style == "german"
        else f"{year:04d}-{month:02d}-{day:02d}"
    )


# --- samples ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A row every sample holds on purpose, and what reading it must give."""

    name: str
    reject: str | None = None  # expected reject reason, None = accepted
    email_problem: str | None = None  # expected for an accepted row
    changes: dict[str, str | tuple[int, int, int]] = field(default_factory=dict)
    fields: Literal["ok", "extra", "short"] = "ok"  # "extra": a delimiter in the last name
    duplicate: bool = False  # takes the id of an ordinary row, which is then rejected too


_BCRYPT = "$2b$12$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
_INJECTION = "anna.schmidt@example.com\r\nBcc: evil@example.net"
_ENCODED_WORD = "=?utf-8?q?Max=0ABcc:evil@example.com?="

# The generator's known bad-row list: every reject reason, and every kind of unreachable or
# hostile customer. Dates are (year, month, day) and written in the row's date style; {domain} is
# the brand's first domain ({DOMAIN} upper-cased).
KNOWN_CASES: tuple[Case, ...] = (
    Case("empty id", "missing_customer_id", changes={ID: ""}),
    Case("blank id", "missing_customer_id", changes={ID: "   "}),
    Case(
        "empty id and bad date: id wins",
        "missing_customer_id",
        changes={ID: "", BIRTH: (1980, 2, 31)},
    ),
    Case("tab inside id", "bad_customer_id", changes={ID: "4711\t0815"}),
    Case("duplicate id", "duplicate_customer_id", duplicate=True),
    Case(
        "duplicate id with plaintext PIN: duplicate wins",
        "duplicate_customer_id",
        changes={HASH: "4711"},
        duplicate=True,
    ),
    Case("31 February", "bad_birth_date", changes={BIRTH: (1980, 2, 31)}),
    Case("future birth date", "bad_birth_date", changes={BIRTH: (2099, 5, 1)}),
    Case("not a date", "bad_birth_date", changes={BIRTH: "unbekannt"}),
    Case("plaintext PIN in hash column", "bad_pin_hash", changes={HASH: "4711"}),
    Case("bcrypt instead of argon2id", "bad_pin_hash", changes={HASH: _BCRYPT}),
    Case("unquoted delimiter in last name", "malformed_row", fields="extra"),
    Case("truncated record", "malformed_row", fields="short"),
    Case("29 February of a leap year", changes={BIRTH: (1984, 2, 29)}),
    Case("no birth date", changes={BIRTH: ""}),
    Case("no e-mail address", email_problem="missing_email", changes={EMAIL: ""}),
    Case(
        "e-mail without domain",
        email_problem="bad_email",
        changes={FIRST: "Max", LAST: "Mustermann", EMAIL: "max.mustermann@"},
    ),
    Case(
        "header injection in e-mail",
        email_problem="bad_email",
        changes={FIRST: "Anna", LAST: "Schmidt", EMAIL: _INJECTION},
    ),
    Case(
        "two recipients",
        email_problem="bad_email",
        changes={LAST: "Weber", EMAIL: "a.weber@example.com, b.weber@example.org"},
    ),
    Case(
        "display name in e-mail",
        email_problem="bad_email",
        changes={FIRST: "Max", LAST: "Mustermann", EMAIL: "Max Mustermann <max@example.com>"},
    ),
    Case(
        "non-ASCII local part",
        email_problem="bad_email",
        changes={FIRST: "Jürgen", LAST: "Groß", EMAIL: "jürgen.groß@example.com"},
    ),
    Case(
        "internationalised domain",
        changes={LAST: "Müller", EMAIL: "kontakt@bäckerei-müller.{domain}"},
    ),
    Case(
        "upper-case address, spaces around",
        changes={FIRST: "Sabine", LAST: "Koch", EMAIL: "  SABINE.KOCH@{DOMAIN} "},
    ),
    Case("script tag in first name", changes={FIRST: "<script>alert(1)</script>"}),
    Case("encoded-word attack in first name", changes={FIRST: _ENCODED_WORD}),
    Case("line break and spaces in last name", changes={LAST: "  Müller\nBcc: evil@example.com "}),
)


@dataclass(frozen=True)
class SampleRow:
    values: tuple[str, ...]  # as written (HASH_PLACEHOLDER for a generated hash)
    reject: str | None = None
    email_problem: str | None = None
    case: str = ""  # the `Case.name`, "" for an ordinary customer

    @property
    def hashed(self) -> bool:
        return HASH_PLACEHOLDER in self.values


@dataclass(frozen=True)
class SamplePlan:
    spec: StyleSpec
    seed: int
    rows: tuple[SampleRow, ...]

    def rejects(self) -> dict[int, str]:
        """data row number -> expected reject reason."""
        return {i: r.reject for i, r in enumerate(self.rows) if r.reject}


def plan_sample(style: Style, seed: int = 2022, customers: int = 380) -> SamplePlan:
    """What a sample holds: `customers` ordinary rows (~15 % hashed) with `KNOWN_CASES` mixed in.

    Cheap (no hashing): tests derive their expectations from it.
    """
    spec = SPECS[style]
    rng = random.Random(f"{seed}-{style}")
    ids = _sample_ids(spec, rng, customers + len(KNOWN_CASES))
    # Addresses taken, lower-cased: one mailbox per customer (the cases' own ones included).
    used = {
        _fill_domain(spec, v).strip().lower()
        for case in KNOWN_CASES
        for k, v in case.changes.items()
        if k == EMAIL and isinstance(v, str)
    }
    rows = [_ordinary_row(spec, rng, ids.pop(), used) for _ in range(customers)]
    for case in KNOWN_CASES:
        row = _case_row(spec, rng, ids.pop(), case, used)
        position = rng.randrange(1, len(rows))
        if case.duplicate:
            partner = _ordinary_index(rows, rng)
            rows[partner] = replace(
                rows[partner], reject=case.reject, case=f"partner of {case.name}"
            )
            row = _with(spec, row, {ID: rows[partner].values[spec.column[ID]]})
        rows.insert(position, row)
    return SamplePlan(spec=spec, seed=seed, rows=tuple(rows))


def write_sample(plan: SamplePlan, path: Path) -> None:
    """Writes the plan's rows with real argon2id hashes (seeded salts: the same bytes each time)."""
    rng = random.Random(f"{plan.seed}-{plan.spec.name}-hashes")
    with _open_for_writing(path, plan.spec) as f:
        _write_row(f, plan.spec, plan.spec.header)
        for row in plan.rows:
            _write_row(
                f,
                plan.spec,
                (
                    argon2id_hash(f"{rng.randrange(10_000):04d}", rng.randbytes(16))
                    if v == HASH_PLACEHOLDER
                    else v
                    for v in row.values
                ),
            )


def write_samples(directory: Path, seed: int = 2022) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for style in STYLES:
        path = directory / f"{style}.csv"
        write_sample(plan_sample(style, seed), path)
        paths.append(path)
    return paths


def _sample_ids(spec: StyleSpec, rng: random.Random, n: int) -> list[str]:
    numbers = rng.sample(range(10_000_000, 99_999_999), n)
    return [f"{spec.id_prefix}{k}" for k in numbers]


def _ordinary_row(
    spec: StyleSpec, rng: random.Random, customer_id: str, used: set[str]
) -> SampleRow:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    values = {
        ID: customer_id,
        FIRST: first,
        LAST: last,
        EMAIL: _email(rng, spec, first, last, used),
        BIRTH: _birth_date(spec, rng),
        HASH: HASH_PLACEHOLDER if rng.random() < 0.15 else "",
        EXTRA: rng.choice(spec.extra_values),
    }
    return SampleRow(values=tuple(values[f] for f in spec.fields))


def _email(rng: random.Random, spec: StyleSpec, first: str, last: str, used: set[str]) -> str:
    local = email_local(first, last)
    shape = rng.random()
    if shape < 0.1:
        local = f"{local}{rng.randrange(1, 99)}"
    elif shape < 0.2:
        local = email_local(first[0], last)
    elif shape < 0.25:
        local = local.title()
    domain = rng.choice(spec.domains)
    while f"{local}@{domain}".lower() in used:  # namesakes get a number, as in real life
        local = f"{local}{rng.randrange(1, 99)}"
    used.add(f"{local}@{domain}".lower())
    return f"{local}@{domain}"


def _birth_date(spec: StyleSpec, rng: random.Random) -> str:
    day = _OLDEST + timedelta(days=rng.randrange((_YOUNGEST - _OLDEST).days))
    return format_date(day.year, day.month, day.day, _date_style(spec, rng))


def _date_style(spec: StyleSpec, rng: random.Random) -> Literal["german", "iso"]:
    if spec.dates == "mixed":
        return "german" if rng.random() < 0.5 else "iso"
    return spec.dates


def _case_row(
    spec: StyleSpec, rng: random.Random, customer_id: str, case: Case, used: set[str]
) -> SampleRow:
    row = _ordinary_row(spec, rng, customer_id, used)
    row = _with(spec, row, {HASH: ""})  # a case is about one thing; keep its hash out of it
    changes = {k: _case_value(spec, rng, v) for k, v in case.changes.items()}
    row = _with(spec, row, changes)
    values = list(row.values)
    if case.fields == "extra":
        at = spec.column[LAST]
        values[at : at + 1] = ["Müller", "Lüdenscheidt"]
    elif case.fields == "short":
        values = values[: spec.column[EMAIL] + 1]
    return SampleRow(tuple(values), case.reject, case.email_problem, case.name)


def _case_value(spec: StyleSpec, rng: random.Random, value: str | tuple[int, int, int]) -> str:
    """A case's value for this style: dates in its date format, {domain} as its own domain."""
    if isinstance(value, tuple):
        return format_date(*value, _date_style(spec, rng))
    return _fill_domain(spec, value)


def _fill_domain(spec: StyleSpec, text: str) -> str:
    return text.replace("{domain}", spec.domains[0]).replace("{DOMAIN}", spec.domains[0].upper())


def _with(spec: StyleSpec, row: SampleRow, changes: dict[str, str]) -> SampleRow:
    values = list(row.values)
    for name, value in changes.items():
        values[spec.column[name]] = value
    return replace(row, values=tuple(values))


def _ordinary_index(rows: list[SampleRow], rng: random.Random) -> int:
    while True:
        i = rng.randrange(len(rows))
        if not rows[i].case:
            return i


def _open_for_writing(path: Path, spec: StyleSpec) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding=spec.encoding, newline="")


def _write_row(f: TextIO, spec: StyleSpec, values: Iterable[str]) -> None:
    csv.writer(f, delimiter=spec.delimiter, lineterminator=spec.line_terminator).writerow(values)


# --- large exports ----------------------------------------------------------------------------

_BLOCK_ROWS = 100_000
_POOL_SIZE = 8
_MISSING_EMAIL_SHARE = 0.01
_BAD_EMAIL_SHARE = 0.005
_EMPTY_BIRTH_DATE_SHARE = 0.02
# One defect per chosen row, in turn; a duplicate makes a pair (both rows rejected).
_DEFECTS = (
    "missing_customer_id",
    "bad_customer_id",
    "duplicate_customer_id",
    "bad_birth_date",
    "bad_pin_hash",
    "malformed_row",
)

ObjectArray = npt.NDArray[np.object_]


@dataclass
class SyntheticSummary:
    """What a generated export holds: the outcome reading it must give."""

    rows: int = 0  # data records
    rejects: Counter[str] = field(default_factory=Counter)  # reason -> rows
    hashed: int = 0  # accepted rows with a pre-existing valid hash
    unreachable: Counter[str] = field(default_factory=Counter)  # email problem -> accepted rows

    @property
    def accepted(self) -> int:
        return self.rows - sum(self.rejects.values())


def write_synthetic_export(
    path: Path,
    n_rows: int,
    *,
    fmt: Style = "congstar",
    style: Style | None = None,
    seed: int = 0,
    bad_row_share: float = 0.001,
    hashed_share: float = 0.1,
) -> SyntheticSummary:
    """Streams `n_rows` customers in `fmt`'s style to `path`, in blocks, in bounded memory.

    `style` is another name for `fmt` (the command line's ``--style``). Every chosen bad row has
    exactly one defect (a duplicate makes a pair), so the summary says what reading must give.
    """
    if style is not None and style != fmt and fmt != "congstar":
        raise ValueError(f"fmt={fmt!r} and style={style!r} disagree")
    spec = SPECS[style or fmt]
    rng = np.random.default_rng(seed)
    tables = _Tables.build(spec, rng)
    summary = SyntheticSummary()
    with _open_for_writing(path, spec) as f:
        _write_row(f, spec, spec.header)
        for start in range(0, n_rows, _BLOCK_ROWS):
            size = min(_BLOCK_ROWS, n_rows - start)
            block = _Block.generate(spec, tables, rng, start, size)
            block.add_defects(rng, bad_row_share, hashed_share, tables)
            block.write(f, spec)
            block.count(summary)
    return summary


@dataclass(frozen=True)
class _Tables:
    """Everything drawn from per row, prepared once."""

    first: ObjectArray
    last: ObjectArray
    local: ObjectArray  # email_local(first, last), indexed [first, last]
    german_dates: ObjectArray
    iso_dates: ObjectArray
    domains: ObjectArray
    extra: ObjectArray
    hashes: ObjectArray  # the pool of real argon2id hashes

    @classmethod
    def build(cls, spec: StyleSpec, rng: np.random.Generator) -> _Tables:
        days = [_OLDEST + timedelta(days=i) for i in range((_YOUNGEST - _OLDEST).days + 1)]
        salts = rng.bytes(16 * _POOL_SIZE)
        return cls(
            first=_objects(FIRST_NAMES),
            last=_objects(LAST_NAMES),
            local=np.array(
                [[email_local(f, s) for s in LAST_NAMES] for f in FIRST_NAMES], dtype=object
            ),
            german_dates=_objects(format_date(d.year, d.month, d.day, "german") for d in days),
            iso_dates=_objects(format_date(d.year, d.month, d.day, "iso") for d in days),
            domains=_objects("@" + d for d in spec.domains),
            extra=_objects(spec.extra_values),
            hashes=_objects(
                argon2id_hash(f"{i:04d}", salts[16 * i : 16 * (i + 1)]) for i in range(_POOL_SIZE)
            ),
        )


def _objects(values: Iterable[str]) -> ObjectArray:
    items = list(values)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


@dataclass
class _Block:
    columns: dict[str, ObjectArray]
    reasons: ObjectArray  # expected reject reason or ""
    email_problems: ObjectArray
    malformed: list[int] = field(default_factory=list)  # rows written with one field too many

    @classmethod
    def generate(
        cls, spec: StyleSpec, t: _Tables, rng: np.random.Generator, start: int, size: int
    ) -> _Block:
        fi = rng.integers(len(t.first), size=size)
        li = rng.integers(len(t.last), size=size)
        ordinals = (start + np.arange(size)).astype(str).astype(object)  # unique addresses
        email = t.local[fi, li] + ordinals + t.domains[rng.integers(len(t.domains), size=size)]
        day = rng.integers(len(t.iso_dates), size=size)
        german = {"german": True, "iso": False}.get(spec.dates)
        use_german = rng.random(size) < 0.5 if german is None else np.full(size, german)
        birth = np.where(use_german, t.german_dates[day], t.iso_dates[day])
        birth[rng.random(size) < _EMPTY_BIRTH_DATE_SHARE] = ""
        ids = np.char.add(spec.id_prefix, np.char.zfill((start + np.arange(size)).astype(str), 9))
        columns = {
            ID: ids.astype(object),
            FIRST: t.first[fi],
            LAST: t.last[li],
            EMAIL: email,
            BIRTH: birth.astype(object),
            HASH: np.full(size, "", dtype=object),
            EXTRA: t.extra[rng.integers(len(t.extra), size=size)],
        }
        return cls(columns, np.full(size, "", dtype=object), np.full(size, None, dtype=object))

    def add_defects(
        self, rng: np.random.Generator, bad_share: float, hashed_share: float, t: _Tables
    ) -> None:
        size = len(self.reasons)
        hashed = rng.random(size) < hashed_share
        self.columns[HASH][hashed] = t.hashes[rng.integers(len(t.hashes), size=int(hashed.sum()))]
        n_bad = min(int(rng.binomial(size, bad_share)), size // 4)
        n_missing = int(rng.binomial(size, _MISSING_EMAIL_SHARE))
        n_bad_email = int(rng.binomial(size, _BAD_EMAIL_SHARE))
        # Distinct rows for every defect, duplicate partners and unreachable customers.
        chosen = rng.permutation(size)[: 2 * n_bad + n_missing + n_bad_email]
        bad, partners = chosen[:n_bad], chosen[n_bad : 2 * n_bad]
        for i, (row, partner) in enumerate(zip(bad, partners, strict=True)):
            self._defect(_DEFECTS[i % len(_DEFECTS)], int(row), int(partner))
        missing = chosen[2 * n_bad : 2 * n_bad + n_missing]
        self.columns[EMAIL][missing] = ""
        self.email_problems[missing] = "missing_email"
        bad_email = chosen[2 * n_bad + n_missing :]
        self.columns[EMAIL][bad_email] = self.columns[EMAIL][bad_email] + "@"
        self.email_problems[bad_email] = "bad_email"

    def _defect(self, reason: str, row: int, partner: int) -> None:
        c = self.columns
        self.reasons[row] = reason
        if reason == "missing_customer_id":
            c[ID][row] = ""
        elif reason == "bad_customer_id":
            c[ID][row] = c[ID][row][:4] + "\t" + c[ID][row][4:]
        elif reason == "duplicate_customer_id":
            c[ID][row] = c[ID][partner]
            self.reasons[partner] = reason
        elif reason == "bad_birth_date":
            c[BIRTH][row] = "31.02.1980" if row % 2 else "2099-01-01"
        elif reason == "bad_pin_hash":
            c[HASH][row] = f"{row % 10_000:04d}"
        else:
            self.malformed.append(row)

    def write(self, f: TextIO, spec: StyleSpec) -> None:
        frame = pd.DataFrame({i: self.columns[name] for i, name in enumerate(spec.fields)})
        start = 0
        for row in sorted(self.malformed):  # written apart, with one field too many
            _to_csv(frame.iloc[start:row], f, spec)
            _write_row(f, spec, [*(str(v) for v in frame.iloc[row]), "Zusatzfeld"])
            start = row + 1
        _to_csv(frame.iloc[start:], f, spec)

    def count(self, summary: SyntheticSummary) -> None:
        summary.rows += len(self.reasons)
        summary.rejects.update(r for r in self.reasons if r)
        accepted = self.reasons == ""
        summary.hashed += int((accepted & (self.columns[HASH] != "")).sum())
        summary.unreachable.update(p for p in self.email_problems[accepted] if p)


def _to_csv(frame: pd.DataFrame, f: TextIO, spec: StyleSpec) -> None:
    frame.to_csv(
        f, header=False, index=False, sep=spec.delimiter, lineterminator=spec.line_terminator
    )


# --- command line -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/synthetic.py", description=__doc__.split("\n")[0] if __doc__ else None
    )
    commands = parser.add_subparsers(dest="command", required=True)
    samples = commands.add_parser("samples", help="write the three sample exports")
    samples.add_argument("directory", type=Path)
    samples.add_argument("--seed", type=int, default=2022)
    export = commands.add_parser("export", help="write one large synthetic export")
    export.add_argument("path", type=Path)
    export.add_argument("--rows", type=int, required=True)
    export.add_argument("--style", choices=STYLES, default="congstar")
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--bad-row-share", type=float, default=0.001)
    export.add_argument("--hashed-share", type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.command == "samples":
        for path in write_samples(args.directory, args.seed):
            print(path)
        return 0
    summary = write_synthetic_export(
        args.path,
        args.rows,
        fmt=args.style,
        seed=args.seed,
        bad_row_share=args.bad_row_share,
        hashed_share=args.hashed_share,
    )
    rejects = dict(summary.rejects)
    print(
        f"{args.path}: {summary.rows} rows, {summary.accepted} accepted, {rejects}", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
