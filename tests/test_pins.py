"""PIN policy, generation, hashing and the batch function of rollout.pins."""

from __future__ import annotations

import copy
import hmac
import pickle
import re
import traceback
from datetime import date
from hashlib import sha256

import pandas as pd
import pytest
from argon2 import PasswordHasher, extract_parameters, low_level
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from rollout import pins
from rollout.pins import (
    FLOOR,
    STRICT,
    HashParams,
    InvalidPinHashError,
    Pepper,
    PepperError,
    PinHasher,
    PinHashingError,
    PinPolicy,
    SecretPin,
    UnknownPepperError,
    check_pin,
    generate_pin,
    is_pin_hash,
    new_pin_hashes,
    verify_pin,
)

ALL = {f"{n:04d}" for n in range(10_000)}
CHEAP = HashParams(time_cost=1, memory_kib=8, parallelism=1)  # argon2's floor: ~20 µs a hash
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))

# --- an independent reference of the rules, written out by hand -----------------------------

RUNS_UP = {"0123", "1234", "2345", "3456", "4567", "5678", "6789"}
RUNS_DOWN = {"9876", "8765", "7654", "6543", "5432", "4321", "3210"}
REPEATS = {"0000", "1111", "2222", "3333", "4444", "5555", "6666", "7777", "8888", "9999"}
STEPS_2_3 = {"0246", "1357", "2468", "3579", "6420", "7531", "8642", "9753", "0369", "9630"}
WRAPS = {"7890", "8901", "9012", "0987", "1098", "2109"}
DATAGENETICS_TOP_20 = [
    "1234", "1111", "0000", "1212", "7777", "1004", "2000", "4444", "2222", "6969",
    "9999", "3333", "5555", "6666", "1122", "1313", "8888", "4321", "2001", "1010",
]  # fmt: skip
COMMON = {*DATAGENETICS_TOP_20, "2580", "0852"}

BIRTH_DATES = [None, date(2000, 2, 29), date(1990, 1, 1), date(1979, 12, 31)]


def reference_refused(strict: bool, birth_date: date | None) -> set[str]:
    refused = RUNS_UP | RUNS_DOWN | REPEATS
    if strict:
        refused |= STEPS_2_3 | WRAPS | COMMON
    if birth_date is not None:
        formats = ["%Y", "%d%m", "%m%d"]
        if strict:
            formats += ["%m%y", "%y%m", "%d%y", "%y%d"]
        refused |= {birth_date.strftime(f) for f in formats}
    return refused


# --- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("birth_date", BIRTH_DATES, ids=str)
@pytest.mark.parametrize("policy", [FLOOR, STRICT], ids=lambda p: p.name)
def test_allowed_set_matches_reference_exhaustively(
    policy: PinPolicy, birth_date: date | None
) -> None:
    expected = ALL - reference_refused(policy is STRICT, birth_date)
    allowed = policy.allowed(birth_date)
    assert list(allowed) == sorted(expected)
    for pin in sorted(ALL):
        assert (check_pin(pin, birth_date, policy) == ()) == (pin in expected), pin


@pytest.mark.parametrize(
    ("policy", "birth_date", "size"),
    [
        (FLOOR, None, 9976),
        (FLOOR, date(1979, 12, 31), 9973),
        (FLOOR, date(2000, 2, 29), 9973),
        (STRICT, None, 9950),
        (STRICT, date(1979, 12, 31), 9943),  # typical: seven distinct date forms
        (STRICT, date(2000, 2, 29), 9944),  # 2000 is a common PIN already
        (STRICT, date(1990, 1, 1), 9946),  # 0101, 0190, 9001 each stand for two forms
    ],
)
def test_documented_allowed_set_sizes(
    policy: PinPolicy, birth_date: date | None, size: int
) -> None:
    assert len(policy.allowed(birth_date)) == size


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("1234", "ascending_run"),
        ("5678", "ascending_run"),
        ("0123", "ascending_run"),
        ("4321", "descending_run"),
        ("9876", "descending_run"),
        ("2222", "repeated_digit"),
        ("2468", "constant_step"),
        ("1357", "constant_step"),
        ("9630", "constant_step"),
        ("0246", "constant_step"),
        ("7890", "wrap_around"),
        ("9012", "wrap_around"),
        ("0987", "wrap_around"),
        ("2109", "wrap_around"),
        ("1212", "common_pin"),
        ("2580", "common_pin"),
        ("6969", "common_pin"),
        ("1234", "common_pin"),
    ],
)
def test_known_bad_pins_are_refused_with_reason(pin: str, reason: str) -> None:
    assert reason in check_pin(pin)
    assert reason in check_pin(pin, date(1985, 6, 15))


def test_floor_refuses_only_runs_and_repeats_without_birth_date() -> None:
    assert check_pin("1234", policy=FLOOR) == ("ascending_run",)
    for pin in ("2468", "9630", "7890", "0987", "1212", "2580"):
        assert check_pin(pin, policy=FLOOR) == ()


@pytest.mark.parametrize(
    ("pin", "reasons"),
    [
        ("1979", ("birth_year",)),
        ("3112", ("birthday",)),
        ("1231", ("birthday",)),
        ("1279", ("birth_month_year",)),
        ("7912", ("birth_month_year",)),
        ("3179", ("birth_day_year",)),
        ("7931", ("birth_day_year",)),
    ],
)
def test_birth_date_forms(pin: str, reasons: tuple[str, ...]) -> None:
    born = date(1979, 12, 31)
    assert check_pin(pin, born) == reasons
    assert check_pin(pin) == ()  # without the birth date it is fine
    floor_forms = {"birth_year", "birthday"}
    assert check_pin(pin, born, FLOOR) == (reasons if floor_forms >= set(reasons) else ())


def test_leap_day_birthday() -> None:
    born = date(2000, 2, 29)
    assert check_pin("2902", born) == ("birthday",)
    assert check_pin("0229", born) == ("birthday",)
    assert check_pin("0229", born, FLOOR) == ("birthday",)
    assert check_pin("2000", born) == ("common_pin", "birth_year")
    assert check_pin("2000", born, FLOOR) == ("birth_year",)


def test_one_pin_can_stand_for_several_forms() -> None:
    assert check_pin("0190", date(1990, 1, 1)) == ("birth_month_year", "birth_day_year")


@pytest.mark.parametrize(
    "pin",
    ["١٢٣٤", "１２３４", "۱۲۳۴", "123", "12345", "", "12 4", "1234\n", " 123", "12a4", 1234, None],
)
def test_anything_but_four_ascii_digits_is_refused(pin: object) -> None:
    assert check_pin(pin) == ("not_four_digits",)  # type: ignore[arg-type]
    assert check_pin(pin, policy=FLOOR) == ("not_four_digits",)  # type: ignore[arg-type]


@pytest.mark.parametrize("birth_date", BIRTH_DATES, ids=str)
def test_generate_pin_returns_only_allowed_pins(birth_date: date | None) -> None:
    allowed = set(STRICT.allowed(birth_date))
    for _ in range(2000):
        pin = generate_pin(birth_date)
        assert isinstance(pin, SecretPin)
        assert pin.reveal() in allowed


def test_generate_pin_with_floor_policy() -> None:
    born = date(1979, 12, 31)
    allowed = set(FLOOR.allowed(born))
    assert all(generate_pin(born, FLOOR).reveal() in allowed for _ in range(1000))


def test_generate_pin_rejects_refused_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1234 (run), 2902 (birthday), 2468 (constant step), then an acceptable 4711.
    draws = iter([1234, 2902, 2468, 4711])
    monkeypatch.setattr(pins.secret.secrets, "randbelow", lambda n: next(draws))
    assert generate_pin(date(2000, 2, 29)).reveal() == "4711"


def test_generate_pin_rejects_non_dates() -> None:
    for not_a_date in ("1990-01-01", float("nan"), 19900101):
        with pytest.raises(TypeError, match="birth_date"):
            generate_pin(not_a_date)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="birth_date"):
            check_pin("4711", not_a_date)  # type: ignore[arg-type]


def test_pandas_dates_from_an_export_frame() -> None:
    assert check_pin("3112", pd.Timestamp("1979-12-31")) == ("birthday",)
    # NaT (a missing date in a datetime column) means: no birth date.
    assert check_pin("3112", pd.NaT) == ()
    assert STRICT.allowed(pd.NaT) == STRICT.allowed(None)
    assert generate_pin(pd.NaT).reveal() in STRICT.allowed(None)


def test_allowed_is_cached_per_effective_date_forms() -> None:
    assert STRICT.allowed(date(1979, 12, 31)) is STRICT.allowed(date(1979, 12, 31))
    assert STRICT.allowed(None) is STRICT.allowed(None)


def test_a_policy_leaving_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="too few"):
        PinPolicy("absurd", common_pins=frozenset(ALL))


# --- SecretPin --------------------------------------------------------------------------------


def test_secret_pin_is_masked() -> None:
    pin = SecretPin("4711")
    for text in (repr(pin), str(pin), f"{pin}", f"{pin!r}", repr([pin])):
        assert "4711" not in text
    assert repr(pin) == "SecretPin('****')"
    assert pin.reveal() == "4711"


def test_secret_pin_refuses_pickling_and_copying() -> None:
    pin = SecretPin("4711")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(pin, protocol=protocol)
    with pytest.raises(TypeError):
        copy.deepcopy(pin)
    with pytest.raises(TypeError):
        pin.__getstate__()


def test_secret_pin_equality_and_slots() -> None:
    assert SecretPin("4711") == SecretPin("4711")
    assert SecretPin("4711") != SecretPin("4712")
    assert SecretPin("4711") != "4711"
    with pytest.raises(TypeError):
        hash(SecretPin("4711"))
    assert not hasattr(SecretPin("4711"), "__dict__")


def test_secret_pin_rejects_malformed_without_echo() -> None:
    with pytest.raises(ValueError) as info:
        SecretPin("١٢٣٤")
    assert "١٢٣٤" not in str(info.value)


# --- hashing ----------------------------------------------------------------------------------


def test_unpeppered_hash_is_standard_argon2id() -> None:
    stored = PinHasher(CHEAP).hash(SecretPin("4711"), "C1")
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert PasswordHasher().verify(stored, "4711")
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(stored, "4712")
    assert verify_pin(stored, "4711", "any customer")
    assert not verify_pin(stored, "4712", "C1")


def test_parameters_are_encoded_as_configured() -> None:
    stored = PinHasher(HashParams(time_cost=3, memory_kib=32, parallelism=2)).hash(
        SecretPin("4711"), "C1"
    )
    params = extract_parameters(stored)
    assert (params.type, params.version) == (low_level.Type.ID, 19)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 32, 2)
    assert (params.salt_len, params.hash_len) == (16, 32)


def test_default_params_are_owasp_minimum() -> None:
    assert HashParams() == HashParams(time_cost=2, memory_kib=19456, parallelism=1)
    assert PinHasher().params == HashParams()


def test_params_from_env() -> None:
    env = {
        "ROLLOUT_ARGON2_TIME_COST": "3",
        "ROLLOUT_ARGON2_MEMORY_KIB": "65536",
        "ROLLOUT_ARGON2_PARALLELISM": "4",
    }
    assert HashParams.from_env(env) == HashParams(3, 65536, 4)
    assert HashParams.from_env({}) == HashParams()
    with pytest.raises(ValueError, match="ROLLOUT_ARGON2_TIME_COST"):
        HashParams.from_env({"ROLLOUT_ARGON2_TIME_COST": "two"})
    with pytest.raises(ValueError, match="MEMORY_KIB must be at least 8"):
        HashParams.from_env({"ROLLOUT_ARGON2_PARALLELISM": "4", "ROLLOUT_ARGON2_MEMORY_KIB": "16"})


@pytest.mark.parametrize(
    ("time_cost", "memory_kib"), [("1", "19456"), ("2", "12288"), ("4", "8192"), ("1", "64")]
)
def test_a_cost_below_owasp_is_refused(time_cost: str, memory_kib: str) -> None:
    env = {"ROLLOUT_ARGON2_TIME_COST": time_cost, "ROLLOUT_ARGON2_MEMORY_KIB": memory_kib}
    with pytest.raises(ValueError, match="below OWASP's minimum"):
        HashParams.from_env(env)


def test_owasp_alternatives_and_the_one_test_only_switch() -> None:
    for m, t in ((47104, 1), (12288, 3), (9216, 4), (7168, 5)):
        env = {"ROLLOUT_ARGON2_TIME_COST": str(t), "ROLLOUT_ARGON2_MEMORY_KIB": str(m)}
        assert HashParams.from_env(env) == HashParams(t, m, 1)
    cheap = HashParams.from_env({"ROLLOUT_TEST_ONLY_CHEAP_ARGON2": "1"})
    assert cheap == HashParams(1, 64, 1) and not cheap.meets_owasp_minimum
    assert HashParams.from_env({"ROLLOUT_TEST_ONLY_CHEAP_ARGON2": "yes"}) == HashParams()


def test_peppered_hash_is_bound_to_customer_and_key() -> None:
    stored = PinHasher(CHEAP, Pepper("k1", KEY_A)).hash(SecretPin("4711"), "C1")
    assert stored.startswith("$legipin-hmac-sha256$k=k1$argon2id$v=19$m=8,t=1,p=1$")
    assert verify_pin(stored, "4711", "C1", {"k1": KEY_A})
    assert not verify_pin(stored, "4712", "C1", {"k1": KEY_A})
    assert not verify_pin(stored, "4711", "C2", {"k1": KEY_A})  # moved to another customer
    assert not verify_pin(stored, "4711", "C1", {"k1": KEY_B})  # same id, wrong key
    with pytest.raises(InvalidHashError):
        PasswordHasher().verify(stored, "4711")  # not a bare PHC string: no accidental match


def test_peppered_format_matches_the_documented_construction() -> None:
    stored = PinHasher(CHEAP, Pepper("k1", KEY_A)).hash(SecretPin("4711"), "Kundé-1")
    phc = stored.removeprefix("$legipin-hmac-sha256$k=k1")

    def field(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    message = field(b"legi-pin/v1") + field("Kundé-1".encode()) + field(b"4711")
    keyed = hmac.new(KEY_A, message, sha256).digest()
    assert PasswordHasher().verify(phc, keyed)


def test_pepper_rotation() -> None:
    old = PinHasher(CHEAP, Pepper("2024", KEY_A))
    new = PinHasher(CHEAP, Pepper("2025", KEY_B))
    old_hash, new_hash = old.hash(SecretPin("4711"), "C1"), new.hash(SecretPin("4711"), "C1")
    both = {"2024": KEY_A, "2025": KEY_B}
    assert verify_pin(old_hash, "4711", "C1", both)
    assert verify_pin(new_hash, "4711", "C1", both)
    with pytest.raises(UnknownPepperError, match="'2024'"):
        verify_pin(old_hash, "4711", "C1", {"2025": KEY_B})
    with pytest.raises(UnknownPepperError):
        verify_pin(old_hash, "4711", "C1")
    assert new.needs_rehash(old_hash)
    assert not new.needs_rehash(new_hash)
    assert PinHasher(HashParams(2, 8, 1), Pepper("2025", KEY_B)).needs_rehash(new_hash)
    assert PinHasher(CHEAP).needs_rehash(new_hash)  # peppered, but no pepper wanted


def test_pepper_from_env() -> None:
    env = {"ROLLOUT_PIN_PEPPER": KEY_A.hex(), "ROLLOUT_PIN_PEPPER_ID": "2025-01"}
    assert Pepper.from_env(env) == Pepper("2025-01", KEY_A)
    assert Pepper.from_env({}) is None
    hasher = PinHasher.from_env({**env, "ROLLOUT_ARGON2_TIME_COST": "3"})
    assert hasher == PinHasher(HashParams(3, 19456, 1), Pepper("2025-01", KEY_A))
    assert KEY_A.hex() not in repr(hasher)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ROLLOUT_PIN_PEPPER": "ab" * 15, "ROLLOUT_PIN_PEPPER_ID": "k"}, "at least 16 bytes"),
        ({"ROLLOUT_PIN_PEPPER": "zz" * 16, "ROLLOUT_PIN_PEPPER_ID": "k"}, "hex"),
        ({"ROLLOUT_PIN_PEPPER": "ab" * 16}, "both"),
        ({"ROLLOUT_PIN_PEPPER": "", "ROLLOUT_PIN_PEPPER_ID": "k"}, "both"),
        ({"ROLLOUT_PIN_PEPPER": "ab" * 16, "ROLLOUT_PIN_PEPPER_ID": "a$b"}, "key id"),
    ],
)
def test_bad_pepper_config_is_refused_without_echo(env: dict[str, str], message: str) -> None:
    with pytest.raises(PepperError, match=message) as info:
        PinHasher.from_env(env)
    if env.get("ROLLOUT_PIN_PEPPER"):
        assert env["ROLLOUT_PIN_PEPPER"] not in str(info.value)


def test_hasher_is_picklable_with_its_pepper() -> None:
    hasher = PinHasher(CHEAP, Pepper("k1", KEY_A))
    clone = pickle.loads(pickle.dumps(hasher))
    assert clone == hasher
    assert verify_pin(clone.hash(SecretPin("4711"), "C1"), "4711", "C1", {"k1": KEY_A})


def test_hash_takes_only_secret_pins() -> None:
    with pytest.raises(TypeError):
        PinHasher(CHEAP).hash("4711", "C1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="customer_id"):
        PinHasher(CHEAP).hash(SecretPin("4711"), "")


def test_is_pin_hash() -> None:
    plain = PinHasher(CHEAP).hash(SecretPin("4711"), "C1")
    peppered = PinHasher(CHEAP, Pepper("k1", KEY_A)).hash(SecretPin("4711"), "C1")
    assert is_pin_hash(plain) and is_pin_hash(peppered)
    assert is_pin_hash(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("4711"))
    argon2i = low_level.hash_secret(b"4711", b"0123456789abcdef", 1, 8, 1, 32, low_level.Type.I)
    argon2d = low_level.hash_secret(b"4711", b"0123456789abcdef", 1, 8, 1, 32, low_level.Type.D)
    rejected = [
        "4711",
        "",
        "$argon2i$garbage",
        "$argon2id$garbage",
        argon2i.decode(),
        argon2d.decode(),
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "$2y$10$abcdefghijklmnopqrstuuN4WJq0.Q3yT3x8o7H4D1YK8t6hZ1K6y",
        plain + "\n",
        " " + plain,
        plain[:-30],  # truncated tag
        plain.replace("m=8,", "m=08,"),
        plain.replace("m=8,t=1,p=1", "m=8,t=1,p=2"),  # below argon2's 8 KiB per lane
        plain.replace("v=19", "v=16"),
        "$legipin-hmac-sha256$k=k1",
        peppered.replace("k=k1", "k="),
        peppered.replace("$argon2id$", "$argon2i$"),
    ]
    for value in rejected:
        assert not is_pin_hash(value), value
    assert not is_pin_hash(None)  # type: ignore[arg-type]


def test_verify_pin_input_checks() -> None:
    stored = PinHasher(CHEAP).hash(SecretPin("4711"), "C1")
    with pytest.raises(InvalidPinHashError):
        verify_pin("4711", "4711", "C1")
    assert not verify_pin(stored, "٤٧١١", "C1")


# --- batch ------------------------------------------------------------------------------------


def test_new_pin_hashes_keeps_order_and_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in generator whose PIN is the birth year, so every hash can be checked.
    monkeypatch.setattr(pins.batch, "generate_pin", lambda born: SecretPin(f"{born.year:04d}"))
    batch = [(f"C{i}", date(1950 + i, 1, 1)) for i in range(11)]
    issued = new_pin_hashes(batch, PinHasher(CHEAP, Pepper("k1", KEY_A)), threads=3)
    assert all(i.sealed is None for i in issued)  # no sealer given
    hashes = [i.pin_hash for i in issued]
    assert len(hashes) == len(batch)
    peppers = {"k1": KEY_A}
    for i, stored in enumerate(hashes):
        assert verify_pin(stored, str(1950 + i), f"C{i}", peppers)
        assert not verify_pin(stored, str(1950 + i), f"C{(i + 1) % 11}", peppers)


def test_new_pin_hashes_draws_allowed_pins() -> None:
    batch = [("C1", date(1979, 12, 31)), ("C2", None), ("C3", date(2000, 2, 29))]
    hashes = [i.pin_hash for i in new_pin_hashes(batch, PinHasher(CHEAP), threads=2)]
    assert all(is_pin_hash(h) for h in hashes)
    # Unpeppered, 10,000 guesses recover any PIN: exactly what the pepper is for.
    for (customer, born), stored in zip(batch, hashes, strict=True):
        found = [p for p in sorted(ALL) if verify_pin(stored, p, customer)]
        assert len(found) == 1 and found[0] in STRICT.allowed(born)


def test_new_pin_hashes_edge_cases() -> None:
    assert new_pin_hashes([], PinHasher(CHEAP)) == []
    assert len(new_pin_hashes([("C1", None)], PinHasher(CHEAP), threads=1)) == 1
    with pytest.raises(ValueError, match="threads"):
        new_pin_hashes([("C1", None)], PinHasher(CHEAP), threads=0)


def test_hashing_failure_does_not_leak_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    def echoing_hash(secret: bytes, *args: object, **kwargs: object) -> bytes:
        raise RuntimeError(f"cannot hash {secret!r}")  # a library that echoes its input

    monkeypatch.setattr(pins.secret.secrets, "randbelow", lambda n: 4711)
    monkeypatch.setattr(low_level, "hash_secret", echoing_hash)
    with pytest.raises(PinHashingError, match=r"'C1'.*RuntimeError") as info:
        new_pin_hashes([("C1", None), ("C2", None)], PinHasher(CHEAP), threads=2)
    err = info.value
    assert err.__cause__ is None and err.__context__ is None
    report = "".join(traceback.TracebackException.from_exception(err, capture_locals=True).format())
    report = re.sub(r"0x[0-9a-f]+", "", report)  # memory addresses could contain 4711
    assert "4711" not in report
    assert "cannot hash" not in report
