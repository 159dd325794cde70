"""Sealed PINs: what the self-service backend can open, checked with an independent HPKE library."""

from __future__ import annotations

import base64
import csv
import dataclasses
import os
import shutil
import stat
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest
from conftest import NO_PREFECT_PROBE, SAMPLES, TEST_PEPPERS, TEST_SEAL_KEYS
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from flows.cli import main
from rollout.assign import assign_pins, local_hash_map
from rollout.brands import SecretNames, load_brand
from rollout.exports import export_path, open_export
from rollout.keys import KeyConfigError, brand_keys
from rollout.pins import STRICT, SecretPin, check_pin, verify_pin
from rollout.seal import (
    SUITE_IDS,
    PinSealer,
    SealError,
    SealKeyError,
    is_sealed_pin,
    new_key_pair,
    open_pin,
    read_private_key,
    seal_info,
    sealed_key_id,
)
from rollout.state import StateStore
from rollout.writeback import with_sealed_column, writeback_path

BRANDS = ["congstar", "jamobil", "pennymobil"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def independent_open(sealed: str, private: bytes, public: bytes, brand: str, cid: str) -> str:
    """Open a sealed PIN with pyhpke, from nothing but the documented format."""
    scheme, kid, blob = sealed.split("$")[1:]
    assert scheme == "legipin-hpke" and kid.startswith("k=")
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    enc, ciphertext = raw[:32], raw[32:]
    suite = CipherSuite.new(
        KEMId(SUITE_IDS["kem_id"]), KDFId(SUITE_IDS["kdf_id"]), AEADId(SUITE_IDS["aead_id"])
    )
    assert suite.kem.id == KEMId.DHKEM_X25519_HKDF_SHA256 and suite.aead.id == AEADId.AES128_GCM
    key = KEMKey.from_jwk(
        {"kty": "OKP", "crv": "X25519", "d": b64url(private), "x": b64url(public)}
    )
    # info = enc("legi-pin/v1") || enc(brand) || enc(customer_id), spelt out as the doc does
    fields = [b"legi-pin/v1", brand.encode(), cid.encode()]
    info = b"".join(len(f).to_bytes(4, "big") + f for f in fields)
    context = suite.create_recipient_context(enc, key, info=info)
    return bytes(context.open(ciphertext)).decode("ascii")


# --- the format -------------------------------------------------------------------------


def test_a_sealed_pin_opens_with_the_reference_and_an_independent_implementation() -> None:
    private, public = new_key_pair()
    sealed = PinSealer("congstar", "2026-11", public).seal(SecretPin("4711"), "C-1")
    assert sealed.startswith("$legipin-hpke$k=2026-11$") and is_sealed_pin(sealed)
    assert "=" not in sealed.rsplit("$", 1)[1] and "4711" not in sealed  # base64url, no padding
    assert open_pin(sealed, private, "congstar", "C-1") == "4711"
    assert independent_open(sealed, private, public, "congstar", "C-1") == "4711"
    assert seal_info("congstar", "C-1") == b"\0\0\0\x0blegi-pin/v1\0\0\0\x08congstar\0\0\0\x03C-1"


def test_every_seal_is_fresh() -> None:
    _, public = new_key_pair()
    sealer = PinSealer("congstar", "k", public)
    assert sealer.seal(SecretPin("4711"), "C1") != sealer.seal(SecretPin("4711"), "C1")


@pytest.mark.parametrize(
    ("brand", "cid"), [("jamobil", "C-1"), ("congstar", "C-2"), ("congstar", "C-1 ")]
)
def test_a_sealed_pin_moved_to_another_customer_or_brand_does_not_open(
    brand: str, cid: str
) -> None:
    private, public = new_key_pair()
    sealed = PinSealer("congstar", "k1", public).seal(SecretPin("4711"), "C-1")
    with pytest.raises(SealError):
        open_pin(sealed, private, brand, cid)
    with pytest.raises(Exception, match=r"(?i)tag|decrypt|open|invalid"):
        independent_open(sealed, private, public, brand, cid)


def test_a_changed_byte_or_another_key_does_not_open() -> None:
    private, public = new_key_pair()
    other, _ = new_key_pair()
    sealed = PinSealer("congstar", "k1", public).seal(SecretPin("4711"), "C-1")
    with pytest.raises(SealError):
        open_pin(sealed, other, "congstar", "C-1")
    head, blob = sealed.rsplit("$", 1)
    flipped = blob[:-3] + ("A" if blob[-3] != "A" else "B") + blob[-2:]
    with pytest.raises(SealError):
        open_pin(f"{head}${flipped}", private, "congstar", "C-1")
    for bad in ("", "4711", sealed + "AA", sealed.replace("hpke", "hmac"), f"{head}$!!"):
        assert not is_sealed_pin(bad)
        with pytest.raises(SealError):
            open_pin(bad, private, "congstar", "C-1")


def test_rotation_old_copies_still_open_with_the_old_key() -> None:
    old_private, old_public = new_key_pair()
    new_private, new_public = new_key_pair()
    old = PinSealer("jamobil", "2025", old_public).seal(SecretPin("4711"), "C1")
    new = PinSealer("jamobil", "2026", new_public).seal(SecretPin("0815"), "C2")
    backend = {"2025": old_private, "2026": new_private}  # the app keeps retired keys
    assert open_pin(old, backend[sealed_key_id(old)], "jamobil", "C1") == "4711"
    assert open_pin(new, backend[sealed_key_id(new)], "jamobil", "C2") == "0815"


def test_bad_seal_keys_are_refused_without_echo() -> None:
    with pytest.raises(SealKeyError, match="32-byte"):
        PinSealer.from_base64("congstar", "k", base64.b64encode(b"x" * 31).decode())
    with pytest.raises(SealKeyError, match="base64"):
        PinSealer.from_base64("congstar", "k", "not base64 at all!")
    with pytest.raises(SealKeyError, match="key id"):
        PinSealer("congstar", "a$b", new_key_pair()[1])
    with pytest.raises(TypeError):
        PinSealer("congstar", "k", new_key_pair()[1]).seal("4711", "C1")  # type: ignore[arg-type]
    assert new_key_pair()[1].hex() not in repr(PinSealer("congstar", "k", new_key_pair()[1]))


# --- the PIN stage: every generated PIN sealed, opened and checked ----------------------


def run_stage(exports: Path, state_dir: Path, brand: str) -> None:
    b = load_brand(brand)
    keys = brand_keys(b)
    with StateStore.in_dir(state_dir) as store:
        export = open_export(export_path(exports, b), b)
        assign_pins(export, b, store, state_dir, local_hash_map(keys.hasher(), 2, keys.sealer), 64)


def written_rows(state_dir: Path, brand: str) -> tuple[list[dict[str, str]], str, str, str, str]:
    b = load_brand(brand)
    fmt = open_export(export_path(SAMPLES, b), b).format
    _, sealed_column = with_sealed_column(fmt, b)
    path = writeback_path(state_dir, b)
    with path.open(encoding="utf-8-sig" if fmt.bom else fmt.encoding, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=fmt.delimiter))
    cmap = fmt.column_map
    return rows, cmap["customer_id"], cmap["birth_date"], fmt.hash_column, sealed_column


def birth_date(text: str) -> date | None:
    for form in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text.strip(), form).date()
        except ValueError:
            continue
    return None


@pytest.mark.parametrize("brand", BRANDS)
def test_every_generated_pin_in_the_write_back_opens_to_the_pin_behind_its_hash(
    tmp_path: Path, brand: str
) -> None:
    run_stage(SAMPLES, tmp_path, brand)
    rows, cid_col, born_col, hash_col, sealed_col = written_rows(tmp_path, brand)
    private, public = TEST_SEAL_KEYS[brand]
    peppers = {f"test-{brand}": TEST_PEPPERS[brand]}
    with StateStore.in_dir(tmp_path) as store:
        generated = {
            r[0]
            for r in store.db.exec_driver_sql(
                "SELECT customer_id FROM customers WHERE brand = ? AND pin_source = 'generated'",
                (brand,),
            )
        }
    opened = 0
    for row in rows:
        cid, sealed = row[cid_col], row[sealed_col]
        if cid not in generated:
            assert sealed == ""  # a customer-chosen PIN: we never had it
            continue
        assert sealed_key_id(sealed) == f"test-seal-{brand}"
        pin = independent_open(sealed, private, public, brand, cid)
        assert verify_pin(row[hash_col], pin, cid, peppers)  # peppered, same row
        assert row[hash_col].startswith(f"$legipin-hmac-sha256$k=test-{brand}$")
        assert check_pin(pin, birth_date(row[born_col]), STRICT) == ()
        opened += 1
    assert opened == len(generated) > 300


def test_a_re_run_writes_the_same_write_back(tmp_path: Path) -> None:
    run_stage(SAMPLES, tmp_path, "pennymobil")
    first = writeback_path(tmp_path, load_brand("pennymobil")).read_bytes()
    run_stage(SAMPLES, tmp_path, "pennymobil")
    assert writeback_path(tmp_path, load_brand("pennymobil")).read_bytes() == first


def test_the_crm_importing_our_write_back_keeps_the_sealed_copy(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    shutil.copy(SAMPLES / "congstar.csv", exports / "congstar.csv")
    run_stage(exports, tmp_path / "state", "congstar")
    ours = writeback_path(tmp_path / "state", load_brand("congstar")).read_bytes()
    (exports / "congstar.csv").write_bytes(ours)  # the next export carries both columns
    run_stage(exports, tmp_path / "state", "congstar")
    assert writeback_path(tmp_path / "state", load_brand("congstar")).read_bytes() == ours


def test_brand_toml_may_rename_the_column_and_the_variables(tmp_path: Path) -> None:
    brand = dataclasses.replace(
        load_brand("jamobil"),
        export=dataclasses.replace(load_brand("jamobil").export, sealed_column="PIN_versiegelt"),
        secrets=SecretNames("JM_PEPPER", "JM_PEPPER_ID", "JM_SEAL", "JM_SEAL_ID"),
    )
    fmt = open_export(export_path(SAMPLES, brand), brand).format
    assert with_sealed_column(fmt, brand)[1] == "PIN_versiegelt"
    public = base64.b64encode(new_key_pair()[1]).decode()
    env = {"JM_PEPPER": "ab" * 32, "JM_PEPPER_ID": "p1", "JM_SEAL": public, "JM_SEAL_ID": "s1"}
    keys = brand_keys(brand, env)
    assert keys.pepper is not None and keys.pepper.key_id == "p1"
    assert keys.sealer is not None and keys.sealer.key_id == "s1"


def test_brand_toml_secrets_table_is_read(tmp_path: Path) -> None:
    shutil.copytree(load_brand("congstar").folder.parent, tmp_path / "t")
    toml = tmp_path / "t" / "congstar" / "brand.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + '\n[secrets]\nseal_key = "CS_SEAL"\n', encoding="utf-8"
    )
    names = load_brand("congstar", tmp_path / "t").secret_names
    assert (names.seal_key, names.seal_key_id) == ("CS_SEAL", "CONGSTAR_PIN_SEAL_KEY_ID")
    assert load_brand("pennymobil").secret_names.pepper == "PENNYMOBIL_PIN_PEPPER"


# --- keys and the refusal ---------------------------------------------------------------

SEAL = {
    "CONGSTAR_PIN_SEAL_KEY": base64.b64encode(TEST_SEAL_KEYS["congstar"][1]).decode(),
    "CONGSTAR_PIN_SEAL_KEY_ID": "s1",
}


def test_without_a_pepper_a_run_refuses_unless_unpeppered() -> None:
    brand = load_brand("congstar")
    with pytest.raises(KeyConfigError, match=r"no pepper.*CONGSTAR_PIN_PEPPER.*--unpeppered"):
        brand_keys(brand, SEAL)
    assert brand_keys(brand, SEAL, unpeppered=True).pepper is None


def test_without_a_seal_key_a_run_refuses() -> None:
    pepper = {"CONGSTAR_PIN_PEPPER": "ab" * 32, "CONGSTAR_PIN_PEPPER_ID": "p"}
    with pytest.raises(KeyConfigError, match=r"no seal key.*CONGSTAR_PIN_SEAL_KEY"):
        brand_keys(load_brand("congstar"), pepper, unpeppered=True)


def test_the_shared_pepper_is_a_fallback_and_half_a_configuration_is_an_error() -> None:
    brand = load_brand("congstar")
    shared = {"ROLLOUT_PIN_PEPPER": "cd" * 32, "ROLLOUT_PIN_PEPPER_ID": "all"}
    keys = brand_keys(brand, {**SEAL, **shared})
    assert keys.pepper is not None and keys.pepper.key_id == "all"
    own = {"CONGSTAR_PIN_PEPPER": "ab" * 32, "CONGSTAR_PIN_PEPPER_ID": "cs"}
    keys = brand_keys(brand, {**SEAL, **shared, **own})
    assert keys.pepper is not None and keys.pepper.key_id == "cs"
    with pytest.raises(KeyConfigError, match="both CONGSTAR_PIN_PEPPER and"):
        brand_keys(brand, {**SEAL, "CONGSTAR_PIN_PEPPER": "ab" * 32})
    with pytest.raises(KeyConfigError, match="both CONGSTAR_PIN_SEAL_KEY and") as info:
        brand_keys(brand, {"CONGSTAR_PIN_SEAL_KEY": SEAL["CONGSTAR_PIN_SEAL_KEY"]})
    with pytest.raises(KeyConfigError, match="hex") as info:
        brand_keys(brand, {**SEAL, "CONGSTAR_PIN_PEPPER": "zz" * 32, "CONGSTAR_PIN_PEPPER_ID": "x"})
    assert "zz" not in str(info.value)


def test_rollout_pins_without_a_pepper_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("JAMOBIL_PIN_PEPPER")
    monkeypatch.delenv("JAMOBIL_PIN_PEPPER_ID")
    code = main(
        ["pins", "--brand", "jamobil", "--exports", str(SAMPLES), "--state-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--unpeppered" in err
    assert not (tmp_path / "state.sqlite3").exists()  # refused before anything started


def test_keys_new_needs_no_prefect(tmp_path: Path) -> None:
    args = ["keys", "new", "--brand", "jamobil", "--out", str(tmp_path), "--key-id", "k1"]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [sys.executable, "-c", NO_PREFECT_PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr  # 3: it imported Prefect
    assert (tmp_path / "jamobil-k1.private.key").is_file()


def test_keys_new_writes_a_private_key_for_the_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "keys"
    assert main(["keys", "new", "--brand", "pennymobil", "--out", str(out), "--key-id", "k7"]) == 0
    printed = capsys.readouterr().out
    private_path = out / "pennymobil-k7.private.key"
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    private_text = private_path.read_text(encoding="ascii").strip()
    assert private_text not in printed
    public_text = (out / "pennymobil-k7.public.key").read_text(encoding="ascii").strip()
    assert f"PENNYMOBIL_PIN_SEAL_KEY={public_text}" in printed
    assert "PENNYMOBIL_PIN_SEAL_KEY_ID=k7" in printed
    sealer = PinSealer.from_base64("pennymobil", "k7", public_text)
    sealed = sealer.seal(SecretPin("2468"), "P1")
    assert open_pin(sealed, read_private_key(private_path), "pennymobil", "P1") == "2468"
    # never overwritten
    assert main(["keys", "new", "--brand", "pennymobil", "--out", str(out), "--key-id", "k7"]) == 2


def test_rollout_pins_unpeppered_works_and_still_seals(
    prefect_api: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("PENNYMOBIL_PIN_PEPPER")
    monkeypatch.delenv("PENNYMOBIL_PIN_PEPPER_ID")
    args = [
        "pins",
        "--brand",
        "pennymobil",
        "--exports",
        str(SAMPLES),
        "--state-dir",
        str(tmp_path),
    ]
    args.append("--unpeppered")
    assert main(args) == 0
    assert "hashing WITHOUT a pepper (--unpeppered)" in capsys.readouterr().err
    with StateStore.in_dir(tmp_path) as store:
        rows = store.db.exec_driver_sql(
            "SELECT customer_id, pin_hash, pin_sealed FROM customers WHERE pin_source = 'generated'"
        ).fetchall()
    assert len(rows) > 300
    private, _ = TEST_SEAL_KEYS["pennymobil"]
    for cid, pin_hash, sealed in rows[:10]:
        assert pin_hash.startswith("$argon2id$")  # no pepper prefix
        assert verify_pin(pin_hash, open_pin(sealed, private, "pennymobil", cid), cid)


def test_the_sealed_column_speaks_the_exports_language_and_is_reused_when_present() -> None:
    names = {}
    for slug in BRANDS:
        brand = load_brand(slug)
        fmt = open_export(export_path(SAMPLES, brand), brand).format
        out, names[slug] = with_sealed_column(fmt, brand)
        assert out.header == (*fmt.header, names[slug])
        again = dataclasses.replace(fmt, header=out.header)
        assert with_sealed_column(again, brand) == (again, names[slug])  # filled in place
    assert names == {
        "congstar": "Legi-PIN-Sealed",  # German headers
        "jamobil": "legi_pin_sealed",
        "pennymobil": "Legi-PIN-Sealed",
    }
