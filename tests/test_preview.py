"""Dry run: .eml files that parse, an escaped index.html, and nothing written outside out_dir."""

from __future__ import annotations

import email
import email.policy
import os
from pathlib import Path

import pytest

from rollout.brands import Brand, load_brand
from rollout.messages import Composer, sample_recipient
from rollout.model import PinSource, Recipient
from rollout.preview import REJECTED, eml_filename, write_preview

HOSTILE = sample_recipient(PinSource.KEPT)  # <script> first name, encoded-word last name
RECIPIENTS = [
    Recipient("4711", "Max", "Mustermann", "max@example.com", PinSource.GENERATED),
    HOSTILE,
    Recipient("../../outside", "Eve", "Dots", "eve@example.com", PinSource.KEPT),
    Recipient("/etc/passwd", "Abs", "Olute", "abs@example.com", PinSource.KEPT),
    Recipient(".hidden", "Hid", "Den", "hid@example.com", PinSource.GENERATED),
    Recipient("4711", "Twin", "Id", "twin@example.com", PinSource.GENERATED),
]
UNREACHABLE = [("9", "missing_email"), ("10", "missing_email"), ("11", "<b>bad</b> & worse")]


@pytest.fixture(scope="module")
def brand() -> Brand:
    return load_brand("jamobil")


@pytest.fixture(scope="module")
def composer(brand: Brand) -> Composer:
    return Composer(brand, "legi-pin-2022")


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for folders), symlinks not followed."""
    return {
        str(p.relative_to(root)): None if p.is_dir() and not p.is_symlink() else _read(p)
        for p in root.rglob("*")
    }


def _read(path: Path) -> bytes:
    return os.readlink(path).encode() if path.is_symlink() else path.read_bytes()


def test_preview_writes_parseable_eml_and_an_escaped_index(
    tmp_path: Path, brand: Brand, composer: Composer
) -> None:
    out = tmp_path / "area" / "preview"
    bad = Recipient("bad", "Bad", "Address", "not an address", PinSource.KEPT)
    summary = write_preview(out, brand, composer, [*RECIPIENTS, bad], UNREACHABLE)

    assert summary.brand == "jamobil" and summary.index_path == out / "index.html"
    assert summary.written == summary.would_mail == len(RECIPIENTS)
    assert summary.unreachable_by_reason == {
        "missing_email": 2,
        "<b>bad</b> & worse": 1,
        REJECTED: 1,
    }
    emls = sorted(out.glob("*.eml"))
    assert len(emls) == len(RECIPIENTS)  # the duplicate id got its own file
    assert {p.name for p in out.iterdir()} == {"index.html", *(p.name for p in emls)}
    for path in emls:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert msg["Subject"].startswith("Ab 23. Mai 2022 brauchst du deine Legi-PIN")
        assert msg.get_body(("html",)) is not None

    index = summary.index_path.read_text(encoding="utf-8")
    assert "<script" not in index.lower()  # the name, even inside srcdoc, is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index  # in the table (To column)
    assert "&amp;lt;script&amp;gt;" in index  # inside srcdoc: escaped HTML, escaped again
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; worse" in index
    assert 'sandbox=""' in index
    for label, count in (("would be mailed", 6), ("unreachable", 4)):
        assert f'<th>{label}</th><td class="num">{count}</td>' in index


def test_preview_writes_nothing_outside_out_dir(
    tmp_path: Path, brand: Brand, composer: Composer
) -> None:
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    # A planted symlink named like a file the preview writes must be replaced, not followed.
    (out / "4711.eml").symlink_to(victim)
    before = {k: v for k, v in tree(tmp_path).items() if not k.startswith("a/b/out/")}

    write_preview(out, brand, composer, RECIPIENTS, UNREACHABLE)

    after = {k: v for k, v in tree(tmp_path).items() if not k.startswith("a/b/out/")}
    assert after == before
    assert victim.read_text() == "keep me"
    assert not (out / "4711.eml").is_symlink()
    assert not list(out.glob(".preview-*"))  # no temporary files left behind


def test_limit_writes_fewer_but_counts_all(
    tmp_path: Path, brand: Brand, composer: Composer
) -> None:
    summary = write_preview(tmp_path / "out", brand, composer, RECIPIENTS, limit=2)
    assert (summary.written, summary.would_mail) == (2, len(RECIPIENTS))
    assert len(list((tmp_path / "out").glob("*.eml"))) == 2


def test_composer_of_another_brand_is_refused(tmp_path: Path, composer: Composer) -> None:
    with pytest.raises(ValueError, match="jamobil"):
        write_preview(tmp_path / "out", load_brand("congstar"), composer, RECIPIENTS)
    assert not (tmp_path / "out").exists()


def test_eml_filenames_are_plain_and_unique() -> None:
    taken: set[str] = {"index.html"}
    ids = ["4711", "4711", "a/b", "a_b", "..", "", "ABC", "abc", "x" * 300, "Ä\x00\n"]
    names = [eml_filename(i, taken) for i in ids]
    assert len(set(map(str.lower, names))) == len(ids)
    for name in names:
        assert name.endswith(".eml") and not name.startswith(".") and len(name) < 100
        assert Path(name).name == name and set(name) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
        )
    assert names[0] == "4711.eml"  # ordinary ids keep their name


def test_the_command_says_how_many_would_be_mailed_and_how_many_are_shown(
    tmp_path: Path,
) -> None:
    """`preview --limit 3` on the samples, without a Prefect server: the core runs directly
    (Prefect is not even imported), the counts are those of the whole export, and rejected
    rows are counted as rejected, not as unreachable."""
    import subprocess
    import sys

    from conftest import NO_PREFECT_PROBE, REPO, SAMPLES

    from rollout.exports import export_path, open_export

    args = ["preview", "--brand", "congstar", "--exports", str(SAMPLES)]
    args += ["--state-dir", str(tmp_path / "state"), "--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}

    def preview(*more: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", NO_PREFECT_PROBE, *args, *more],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr  # 3: preview imported Prefect
        return done.stdout.strip()

    brand = load_brand("congstar")
    export = open_export(export_path(SAMPLES, brand), brand)
    rejects = sum(len(chunk.rejects) for chunk in export.chunks())
    everyone = preview()
    would = int(everyone.split(": ", 1)[1].split(" ", 1)[0])
    assert f"{would} e-mails would be sent, {would} shown" in everyone
    limited = preview("--limit", "3")
    assert f"{would} e-mails would be sent, 3 shown" in limited
    rejected = limited.split("rejected: ", 1)[1].split(";", 1)[0]
    assert sum(int(part.rsplit(" ", 1)[1]) for part in rejected.split(", ")) == rejects > 0
    unreachable = limited.split("unreachable: ", 1)[1].split(";", 1)[0]
    assert "rejected" not in unreachable and "duplicate_customer_id" not in unreachable
    index = (tmp_path / "out" / "congstar" / "index.html").read_text(encoding="utf-8")
    assert f'<th>would be mailed</th><td class="num">{would}</td>' in index
    assert '<th>previewed here</th><td class="num">3</td>' in index
    assert f'<th>rejected (export rows)</th><td class="num">{rejects}</td>' in index
    assert not (tmp_path / "state").exists()  # a preview creates no state DB
