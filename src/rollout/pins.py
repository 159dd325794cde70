"""Legi-PIN generation, policy checks and hashing.

Policy
------
A Legi-PIN is four ASCII digits.  Two policies exist; both refuse, whatever the birth date:

* ascending runs of step 1 (0123 … 6789), descending runs (9876 … 3210), four equal digits.

``FLOOR`` (the brands' written rules) adds the birth year (YYYY) and the birthday as DDMM
and MMDD.  It leaves **9,976** PINs for a customer without a birth date and 9,973 to 9,976
with one (typically 9,973: the three date forms are distinct and otherwise allowed).

``STRICT`` (the default of `generate_pin` and `check_pin`) additionally refuses

* every other constant-step sequence, as Android's PIN-complexity check counts them
  (steps ±2 and ±3: 0246, 1357, 2468, 3579, 0369 and their reverses),
* the wrap-arounds 7890, 8901, 9012 and reversed 0987, 1098, 2109,
* `COMMON_PINS`, the blocklist of the most often human-chosen PINs,
* seven renderings of the birth date: YYYY, DDMM, MMDD, MMYY, YYMM, DDYY, YYDD.

It leaves **9,950** PINs without a birth date and 9,943 to 9,950 with one (typically 9,943,
the seven forms being distinct; 1 Jan 1990 leaves 9,946 because 0101, 0190 and 9001 each
stand for two forms).  Customers without a birth date (None, or pandas.NaT from an export
frame) get only the date-independent rules.  `check_pin` names the rules a PIN breaks with
the codes of `Reason`.

Generation draws `secrets.randbelow(10000)` and rejects refused PINs.  Rejection sampling
is exactly uniform over the allowed set (no modulo bias), needs no per-date table (a cache
of ~10,000-entry tuples for every birth date of millions of customers would cost GBs) and
costs ~1.006 draws per PIN, a few µs.

Hashing
-------
argon2id via argon2-cffi; with a pepper, the PIN is first keyed with HMAC-SHA256 over a
domain tag, the customer id and the PIN.  Stored formats, the pepper's encoding and the
threat model are in docs/pin-hash-format.md.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import lru_cache, partial
from hashlib import sha256
from itertools import pairwise
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from argon2 import low_level
from argon2.exceptions import HashingError, VerifyMismatchError

if TYPE_CHECKING:
    from rollout.seal import PinSealer

__all__ = [
    "COMMON_PINS",
    "FLOOR",
    "KEY_ID_PATTERN",
    "POLICIES",
    "STRICT",
    "TEST_ONLY_CHEAP_ARGON2",
    "DateForm",
    "HashParams",
    "InvalidPinHashError",
    "IssuedPin",
    "Pepper",
    "PepperError",
    "PinHasher",
    "PinHashingError",
    "PinPolicy",
    "Reason",
    "SecretPin",
    "UnknownPepperError",
    "check_pin",
    "generate_pin",
    "is_pin_hash",
    "length_prefixed",
    "new_pin_hashes",
    "verify_pin",
]

# `[0-9]`, not `\d` or str.isdigit(): those accept Arabic-Indic and other Unicode digits.
_FOUR_DIGITS = re.compile(r"[0-9]{4}")
# Index n holds f"{n:04d}", so a draw needs no formatting and makes no new string.
_ALL_PINS: tuple[str, ...] = tuple(f"{n:04d}" for n in range(10_000))

# Most common human-chosen 4-digit PINs.  Source: Nick Berry, "PIN Number Analysis",
# DataGenetics, 2012 (3.4 million leaked 4-digit codes).  Its top 20, in rank order, account
# for 26.83 % of all codes; runs and repeats among them are refused by other rules anyway
# but stay listed so the list can be checked against the source.  2580 (rank 22, the middle
# column of a phone keypad) and its reverse 0852 are added for the same keypad pattern.
COMMON_PINS: frozenset[str] = frozenset(
    {
        "1234", "1111", "0000", "1212", "7777", "1004", "2000", "4444", "2222", "6969",
        "9999", "3333", "5555", "6666", "1122", "1313", "8888", "4321", "2001", "1010",
        "2580", "0852",
    }
)  # fmt: skip


class Reason(StrEnum):
    """Why a PIN is refused; members are plain strings ("ascending_run", …)."""

    NOT_FOUR_DIGITS = "not_four_digits"
    ASCENDING_RUN = "ascending_run"  # 0123 … 6789
    DESCENDING_RUN = "descending_run"  # 9876 … 3210
    REPEATED_DIGIT = "repeated_digit"  # 0000 … 9999
    CONSTANT_STEP = "constant_step"  # steps ±2, ±3 (±1 and 0 have their own codes)
    WRAP_AROUND = "wrap_around"  # 7890, 8901, 9012, 0987, 1098, 2109
    COMMON_PIN = "common_pin"
    BIRTH_YEAR = "birth_year"  # YYYY
    BIRTHDAY = "birthday"  # DDMM, MMDD
    BIRTH_MONTH_YEAR = "birth_month_year"  # MMYY, YYMM
    BIRTH_DAY_YEAR = "birth_day_year"  # DDYY, YYDD


class DateForm(StrEnum):
    """A 4-digit rendering of a birth date (YY is the year modulo 100)."""

    YYYY = "YYYY"
    DDMM = "DDMM"
    MMDD = "MMDD"
    MMYY = "MMYY"
    YYMM = "YYMM"
    DDYY = "DDYY"
    YYDD = "YYDD"

    @property
    def reason(self) -> Reason:
        return _FORM_REASONS[self]

    def render(self, parts: Mapping[str, str]) -> str:
        """The form filled from `_date_parts` (keys DD, MM, YY, YYYY)."""
        if self is DateForm.YYYY:
            return parts["YYYY"]
        return parts[self[:2]] + parts[self[2:]]


_FORM_REASONS = {
    DateForm.YYYY: Reason.BIRTH_YEAR,
    DateForm.DDMM: Reason.BIRTHDAY,
    DateForm.MMDD: Reason.BIRTHDAY,
    DateForm.MMYY: Reason.BIRTH_MONTH_YEAR,
    DateForm.YYMM: Reason.BIRTH_MONTH_YEAR,
    DateForm.DDYY: Reason.BIRTH_DAY_YEAR,
    DateForm.YYDD: Reason.BIRTH_DAY_YEAR,
}


def _known_date(birth_date: date | None) -> date | None:
    """`birth_date`, or None when it is unknown: None, or pandas.NaT from an export frame."""
    if birth_date is None:
        return None
    if not isinstance(birth_date, date):
        raise TypeError(f"birth_date must be a datetime.date or None, not {type(birth_date)}")
    # NaT is a datetime subclass with NaN fields that equals nothing, itself included.
    return birth_date if birth_date == birth_date else None


def _date_parts(birth_date: date) -> dict[str, str]:
    return {
        "DD": f"{birth_date.day:02d}",
        "MM": f"{birth_date.month:02d}",
        "YY": f"{birth_date.year % 100:02d}",
        "YYYY": f"{birth_date.year:04d}",
    }


@dataclass(frozen=True)
class PinPolicy:
    """Which PINs are refused.  Runs of step ±1 and repeated digits are always refused."""

    name: str
    refuse_constant_steps: bool = False
    refuse_wrap_arounds: bool = False
    common_pins: frozenset[str] = frozenset()
    date_forms: tuple[DateForm, ...] = (DateForm.YYYY, DateForm.DDMM, DateForm.MMDD)
    # Derived once per policy: refusal reasons of the date-independent rules, and what they
    # leave.  Excluded from eq/hash so the policy stays a cheap, hashable cache key.
    _static: dict[str, tuple[Reason, ...]] = field(init=False, repr=False, compare=False)
    _base: frozenset[str] = field(init=False, repr=False, compare=False)
    _base_sorted: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not all(isinstance(p, str) and _FOUR_DIGITS.fullmatch(p) for p in self.common_pins):
            raise ValueError(f"policy {self.name!r}: common_pins must be 4-digit strings")
        static = {p: r for p in _ALL_PINS if (r := self._pattern_reasons(p))}
        base = tuple(p for p in _ALL_PINS if p not in static)
        # Rejection sampling must terminate even after a birth date removes its forms.
        if len(base) <= len(self.date_forms):
            raise ValueError(f"policy {self.name!r} leaves too few PINs")
        object.__setattr__(self, "_static", static)
        object.__setattr__(self, "_base", frozenset(base))
        object.__setattr__(self, "_base_sorted", base)

    def _pattern_reasons(self, pin: str) -> tuple[Reason, ...]:
        """Reasons that do not depend on a birth date, for a 4-digit `pin`."""
        digits = [int(c) for c in pin]
        steps = {b - a for a, b in pairwise(digits)}
        reasons: list[Reason] = []
        if len(steps) == 1:
            step = next(iter(steps))
            named = {1: Reason.ASCENDING_RUN, -1: Reason.DESCENDING_RUN, 0: Reason.REPEATED_DIGIT}
            if step in named:
                reasons.append(named[step])
            elif self.refuse_constant_steps:
                reasons.append(Reason.CONSTANT_STEP)
        elif self.refuse_wrap_arounds and {s % 10 for s in steps} in ({1}, {9}):
            reasons.append(Reason.WRAP_AROUND)  # ±1 modulo 10, but not a plain run
        if pin in self.common_pins:
            reasons.append(Reason.COMMON_PIN)
        return tuple(reasons)

    def date_strings(self, birth_date: date | None) -> tuple[str, ...]:
        """The PINs this policy refuses because of `birth_date` (≤ one per form)."""
        born = _known_date(birth_date)
        if born is None:
            return ()
        parts = _date_parts(born)
        return tuple(form.render(parts) for form in self.date_forms)

    def refusals(self, pin: str, birth_date: date | None = None) -> tuple[str, ...]:
        """Every reason `pin` is refused, in rule order; empty when it is acceptable."""
        if not isinstance(pin, str) or not _FOUR_DIGITS.fullmatch(pin):
            return (Reason.NOT_FOUR_DIGITS,)
        reasons = list(self._static.get(pin, ()))
        for form, rendered in zip(self.date_forms, self.date_strings(birth_date), strict=False):
            if rendered == pin and form.reason not in reasons:
                reasons.append(form.reason)
        return tuple(reasons)

    @property
    def rules(self) -> tuple[Reason, ...]:
        """Every reason this policy can refuse a PIN for, in rule order (what a customer must
        be told: the e-mail lists exactly these)."""
        reasons = [Reason.NOT_FOUR_DIGITS, *(r for r in _PATTERN_REASONS if self._enforces(r))]
        for form in self.date_forms:
            if form.reason not in reasons:
                reasons.append(form.reason)
        return tuple(reasons)

    def _enforces(self, reason: Reason) -> bool:
        if reason is Reason.CONSTANT_STEP:
            return self.refuse_constant_steps
        if reason is Reason.WRAP_AROUND:
            return self.refuse_wrap_arounds
        if reason is Reason.COMMON_PIN:
            return bool(self.common_pins)
        return True

    @property
    def common_pins_of_their_own(self) -> tuple[str, ...]:
        """The blocklisted PINs no other rule of this policy refuses (to name them to people)."""
        return tuple(sorted(p for p, r in self._static.items() if r == (Reason.COMMON_PIN,)))

    def allowed(self, birth_date: date | None = None) -> tuple[str, ...]:
        """All acceptable PINs for `birth_date`, ascending."""
        # Key on what the date actually removes, so dates with the same effect share an entry.
        removed = tuple(sorted({s for s in self.date_strings(birth_date) if s in self._base}))
        return _allowed_without(self, removed)


# ~10,000 references (~80 KB) per entry; bounded because there are ~30,000 distinct birth
# dates.  Generation does not use this table (see the module docstring).
@lru_cache(maxsize=256)
def _allowed_without(policy: PinPolicy, removed: tuple[str, ...]) -> tuple[str, ...]:
    if not removed:
        return policy._base_sorted
    return tuple(p for p in policy._base_sorted if p not in removed)


_PATTERN_REASONS = (
    Reason.ASCENDING_RUN,
    Reason.DESCENDING_RUN,
    Reason.REPEATED_DIGIT,
    Reason.CONSTANT_STEP,
    Reason.WRAP_AROUND,
    Reason.COMMON_PIN,
)

FLOOR = PinPolicy("floor")
STRICT = PinPolicy(
    "strict",
    refuse_constant_steps=True,
    refuse_wrap_arounds=True,
    common_pins=COMMON_PINS,
    date_forms=tuple(DateForm),
)


# By name, for brand.toml's `customer_pin_policy`.
POLICIES: dict[str, PinPolicy] = {"floor": FLOOR, "strict": STRICT}


def check_pin(
    pin: str, birth_date: date | None = None, policy: PinPolicy = STRICT
) -> tuple[str, ...]:
    """Reason codes why `pin` is refused for a customer born on `birth_date`; () if fine."""
    return policy.refusals(pin, birth_date)


class SecretPin:
    """A plaintext PIN that masks itself in reprs, logs and f-strings and refuses pickling.

    Pickling is refused so a PIN cannot end up in a task result store; equality is
    constant-time; instances are unhashable (defining __eq__ disables __hash__).
    """

    __slots__ = ("_pin",)

    def __init__(self, pin: str) -> None:
        if not isinstance(pin, str) or not _FOUR_DIGITS.fullmatch(pin):
            raise ValueError("a Legi-PIN is exactly four ASCII digits")  # never echo the value
        self._pin = pin

    def reveal(self) -> str:
        """The plaintext digits; call only where the PIN is hashed."""
        return self._pin

    def __repr__(self) -> str:
        return "SecretPin('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretPin):
            return NotImplemented
        return hmac.compare_digest(self._pin.encode(), other._pin.encode())

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretPin cannot be pickled or copied: the plaintext stays in memory")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self.__reduce__()

    def __getstate__(self) -> NoReturn:
        self.__reduce__()


def generate_pin(birth_date: date | None, policy: PinPolicy = STRICT) -> SecretPin:
    """A uniformly random PIN acceptable under `policy` for a customer born on `birth_date`."""
    refused_dates = policy.date_strings(birth_date)
    base = policy._base
    while True:
        pin = _ALL_PINS[secrets.randbelow(10_000)]
        if pin in base and pin not in refused_dates:
            return SecretPin(pin)


# --- hashing ------------------------------------------------------------------------------

_SALT_LEN = 16
_HASH_LEN = 32
_DOMAIN_TAG = b"legi-pin/v1"
_PEPPERED_SCHEME = "legipin-hmac-sha256"
KEY_ID_PATTERN = r"[A-Za-z0-9._-]{1,32}"
_KEY_ID = KEY_ID_PATTERN
_KEY_ID_RE = re.compile(_KEY_ID)
# Strict argon2id PHC string: canonical decimals, unpadded standard base64, salt ≥ 8 bytes
# and tag ≥ 4 bytes (argon2's own minimums).
_PIN_HASH_RE = re.compile(
    rf"(?:\${_PEPPERED_SCHEME}\$k=(?P<kid>{_KEY_ID}))?"
    r"(?P<phc>\$argon2id\$v=19"
    r"\$m=(?P<m>[1-9][0-9]{0,9}),t=(?P<t>[1-9][0-9]{0,9}),p=(?P<p>[1-9][0-9]{0,7})"
    r"\$(?P<salt>[A-Za-z0-9+/]{11,})\$(?P<tag>[A-Za-z0-9+/]{6,}))"
)


class PepperError(ValueError):
    """The pepper or its key id is missing, malformed or too short."""


class UnknownPepperError(LookupError):
    """A stored hash names a pepper key id that is not configured."""


class InvalidPinHashError(ValueError):
    """A stored value is not a Legi-PIN hash (see `is_pin_hash`)."""


class PinHashingError(RuntimeError):
    """Hashing failed; the message names the customer and the error type, never the PIN."""


@dataclass(frozen=True)
class HashParams:
    """argon2id cost; the default is the OWASP minimum (t=2, m=19 MiB, p=1)."""

    time_cost: int = 2
    memory_kib: int = 19_456
    parallelism: int = 1

    def __post_init__(self) -> None:
        if self.time_cost < 1 or not 1 <= self.parallelism < 2**24:
            raise ValueError("argon2 needs time_cost >= 1 and 1 <= parallelism < 2**24")
        if not 8 * self.parallelism <= self.memory_kib < 2**32:
            raise ValueError("argon2 needs 8 * parallelism <= memory_kib < 2**32")

    @property
    def meets_owasp_minimum(self) -> bool:
        """At least one of OWASP's argon2id configurations (memory and passes both reached)."""
        return any(self.memory_kib >= m and self.time_cost >= t for m, t in OWASP_ARGON2ID)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HashParams:
        """Defaults overridden by ROLLOUT_ARGON2_TIME_COST, _MEMORY_KIB, _PARALLELISM.

        A cost below OWASP's minimum is refused; only the test-only switch
        `TEST_ONLY_CHEAP_ARGON2=1` (tests and benchmarks not about hashing) gives a cheap one.
        """
        env = os.environ if environ is None else environ
        if env.get(TEST_ONLY_CHEAP_ARGON2, "").strip() == "1":
            return CHEAP_TEST_PARAMS
        default = cls()
        params = cls(
            time_cost=_env_int(env, "ROLLOUT_ARGON2_TIME_COST", default.time_cost),
            memory_kib=_env_int(env, "ROLLOUT_ARGON2_MEMORY_KIB", default.memory_kib),
            parallelism=_env_int(env, "ROLLOUT_ARGON2_PARALLELISM", default.parallelism),
        )
        if not params.meets_owasp_minimum:
            raise ValueError(
                f"argon2id cost t={params.time_cost}, m={params.memory_kib} KiB is below OWASP's "
                "minimum (e.g. t=2 with 19456 KiB, t=3 with 12288 KiB); "
                "ROLLOUT_ARGON2_TIME_COST/_MEMORY_KIB may only raise it"
            )
        return params


# OWASP Password Storage Cheat Sheet, argon2id: (memory KiB, passes), all with p=1.
OWASP_ARGON2ID = ((47_104, 1), (19_456, 2), (12_288, 3), (9_216, 4), (7_168, 5))
# The one switch for a cheap cost: tests and benchmarks that are not about hashing.  Same
# format, a few µs a hash; never set it for real customers.
TEST_ONLY_CHEAP_ARGON2 = "ROLLOUT_TEST_ONLY_CHEAP_ARGON2"
CHEAP_TEST_PARAMS = HashParams(time_cost=1, memory_kib=64, parallelism=1)


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Pepper:
    """A secret HMAC key kept outside the database, with the id stored next to each hash."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _KEY_ID_RE.fullmatch(self.key_id):
            raise PepperError("pepper key id must be 1-32 characters of A-Z a-z 0-9 . _ -")
        if not isinstance(self.key, bytes) or len(self.key) < 16:
            raise PepperError("pepper must be at least 16 bytes (32 hex digits)")

    @classmethod
    def from_hex(cls, key_id: str, hex_key: str) -> Pepper:
        try:
            key = bytes.fromhex(hex_key.strip())
        except ValueError:
            raise PepperError("pepper must be hex-encoded (0-9, a-f)") from None  # no echo
        return cls(key_id, key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Pepper | None:
        """ROLLOUT_PIN_PEPPER (hex) with ROLLOUT_PIN_PEPPER_ID; None when both are unset."""
        env = os.environ if environ is None else environ
        hex_key = env.get("ROLLOUT_PIN_PEPPER", "")
        key_id = env.get("ROLLOUT_PIN_PEPPER_ID", "").strip()
        if not hex_key.strip() and not key_id:
            return None
        # Half a configuration (e.g. an empty secret mount) must not silently drop the pepper.
        if not hex_key.strip() or not key_id:
            raise PepperError("set both ROLLOUT_PIN_PEPPER and ROLLOUT_PIN_PEPPER_ID, or neither")
        try:
            return cls.from_hex(key_id, hex_key)
        except PepperError as err:
            raise PepperError(f"ROLLOUT_PIN_PEPPER/_ID: {err}") from None


def length_prefixed(*fields: bytes) -> bytes:
    """enc(a) || enc(b) || ..., enc(x) = len(x) as 4-byte big-endian || x (unambiguous)."""
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def _keyed_pin(key: bytes, customer_id: str, pin: str) -> bytes:
    """HMAC-SHA256 over length-prefixed tag, customer id and PIN (see the format doc)."""
    message = length_prefixed(_DOMAIN_TAG, customer_id.encode("utf-8"), pin.encode("ascii"))
    return hmac.new(key, message, sha256).digest()


@dataclass(frozen=True)
class PinHasher:
    """Hashes PINs with argon2id, keyed with `pepper` if given.  Picklable (for Dask).

    Pickling copies the pepper to wherever the hasher goes (e.g. Dask workers); that is
    accepted, since those workers need it to hash.
    """

    params: HashParams = field(default_factory=HashParams)
    pepper: Pepper | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PinHasher:
        return cls(HashParams.from_env(environ), Pepper.from_env(environ))

    def hash(self, pin: SecretPin, customer_id: str) -> str:
        """The value to store for `customer_id`; the PIN is bound to it only when peppered."""
        if not isinstance(pin, SecretPin):
            raise TypeError("PinHasher.hash takes a SecretPin")
        if not isinstance(customer_id, str) or not customer_id:
            raise ValueError("customer_id must be a non-empty string")
        # The secret is never bound to a local name and the failure is raised outside the
        # except block, so neither the message, the __context__ nor frame locals hold it.
        try:
            phc = self._argon2(self._secret(pin, customer_id))
        except HashingError as exc:
            failure = f"HashingError: {exc}"  # argon2's own error text, no input data
        except Exception as exc:
            failure = type(exc).__name__
        else:
            if self.pepper is None:
                return phc
            return f"${_PEPPERED_SCHEME}$k={self.pepper.key_id}{phc}"
        raise PinHashingError(f"hashing the PIN of customer {customer_id!r} failed ({failure})")

    def needs_rehash(self, stored: str) -> bool:
        """Whether `stored` was made with other cost parameters or another (or no) pepper."""
        match = _match_pin_hash(stored)
        kid = None if self.pepper is None else self.pepper.key_id
        stored_params = HashParams(int(match["t"]), int(match["m"]), int(match["p"]))
        return match["kid"] != kid or stored_params != self.params

    def _secret(self, pin: SecretPin, customer_id: str) -> bytes:
        if self.pepper is None:
            return pin.reveal().encode("ascii")
        return _keyed_pin(self.pepper.key, customer_id, pin.reveal())

    def _argon2(self, secret: bytes) -> str:
        p = self.params
        encoded = low_level.hash_secret(
            secret,
            os.urandom(_SALT_LEN),
            time_cost=p.time_cost,
            memory_cost=p.memory_kib,
            parallelism=p.parallelism,
            hash_len=_HASH_LEN,
            type=low_level.Type.ID,
        )
        return encoded.decode("ascii")


def _match_pin_hash(value: object) -> re.Match[str]:
    match = _PIN_HASH_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None or not _sane(match):
        raise InvalidPinHashError("not a Legi-PIN hash (argon2id PHC string, maybe peppered)")
    return match


def _sane(match: re.Match[str]) -> bool:
    # argon2's memory floor, and base64 lengths that decode to whole bytes.
    return (
        int(match["m"]) >= 8 * int(match["p"])
        and len(match["salt"]) % 4 != 1
        and len(match["tag"]) % 4 != 1
    )


def is_pin_hash(value: str) -> bool:
    """Whether `value` is structurally a stored Legi-PIN hash (no verification).

    Accepts an argon2id PHC string (``$argon2id$v=19$m=…,t=…,p=…$salt$tag``) and the peppered
    form (``$legipin-hmac-sha256$k=<key id>`` followed by one).  argon2i and argon2d are
    refused: we never write them.  Used to reject plaintext such as "4711" in an export's
    hash column; a regex, ~1 µs per value.
    """
    try:
        _match_pin_hash(value)
    except InvalidPinHashError:
        return False
    return True


def verify_pin(
    stored: str,
    pin: str,
    customer_id: str,
    peppers: Mapping[str, bytes] | None = None,
) -> bool:
    """Whether `pin` is the PIN behind `stored` for `customer_id`.

    `peppers` maps key ids to keys (current and retired ones during a rotation).  A hash
    naming a key id missing from `peppers` raises `UnknownPepperError` rather than returning
    False: a configuration gap must not look like every customer typing a wrong PIN.  A
    malformed `stored` raises `InvalidPinHashError`; a `pin` that is not four ASCII digits is
    simply wrong (False).  `customer_id` matters only for peppered hashes.
    """
    match = _match_pin_hash(stored)
    if not isinstance(pin, str) or not _FOUR_DIGITS.fullmatch(pin):
        return False
    kid = match["kid"]
    if kid is None:
        secret = pin.encode("ascii")
    else:
        key = (peppers or {}).get(kid)
        if key is None:
            raise UnknownPepperError(f"hash uses pepper key id {kid!r}, which is not configured")
        secret = _keyed_pin(key, customer_id, pin)
    try:
        return low_level.verify_secret(match["phc"].encode("ascii"), secret, low_level.Type.ID)
    except VerifyMismatchError:
        return False


# --- batch --------------------------------------------------------------------------------


class IssuedPin(NamedTuple):
    """What leaves the generate-and-hash step: the hash, and the sealed copy if sealing."""

    pin_hash: str
    sealed: str | None


def new_pin_hashes(
    batch: Sequence[tuple[str, date | None]],
    hasher: PinHasher,
    threads: int | None = None,
    sealer: PinSealer | None = None,
) -> list[IssuedPin]:
    """Draw, hash (and seal, given `sealer`) a fresh PIN per (customer_id, birth_date), in order.

    The unit of work for a thread pool or Dask worker; only hashes and sealed copies leave
    it.  argon2-cffi releases the GIL, so the batch is cut into one contiguous slice per
    thread (not one future per PIN).
    """
    wanted = threads if threads is not None else os.cpu_count() or 1
    if wanted < 1:
        raise ValueError("threads must be at least 1")
    workers = min(wanted, len(batch))
    work = partial(_issue_slice, hasher, sealer)
    if workers <= 1:
        return work(batch)
    size = -(-len(batch) // workers)  # ceiling division
    slices = [batch[i : i + size] for i in range(0, len(batch), size)]
    with ThreadPoolExecutor(max_workers=len(slices), thread_name_prefix="pin-hash") as pool:
        parts = list(pool.map(work, slices))
    return [issued for part in parts for issued in part]


def _issue_slice(
    hasher: PinHasher, sealer: PinSealer | None, part: Sequence[tuple[str, date | None]]
) -> list[IssuedPin]:
    return [_issue(hasher, sealer, customer_id, birth) for customer_id, birth in part]


def _issue(
    hasher: PinHasher, sealer: PinSealer | None, customer_id: str, birth_date: date | None
) -> IssuedPin:
    pin = generate_pin(birth_date)
    sealed = sealer.seal(pin, customer_id) if sealer is not None else None
    return IssuedPin(hasher.hash(pin, customer_id), sealed)
