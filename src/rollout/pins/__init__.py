"""Legi-PINs: which are allowed (`policy`), the plaintext in memory (`secret`), hashing
(`hashing`) and the batch the PIN stage runs on every core (`batch`).

Legi-PIN generation, policy checks and hashing.

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

from rollout.pins.batch import IssuedPin, new_pin_hashes
from rollout.pins.hashing import (
    KEY_ID_PATTERN,
    TEST_ONLY_CHEAP_ARGON2,
    HashParams,
    InvalidPinHashError,
    Pepper,
    PepperError,
    PinHasher,
    PinHashingError,
    UnknownPepperError,
    is_pin_hash,
    length_prefixed,
    verify_pin,
)
from rollout.pins.policy import (
    COMMON_PINS,
    FLOOR,
    POLICIES,
    STRICT,
    DateForm,
    PinPolicy,
    Reason,
    check_pin,
)
from rollout.pins.secret import SecretPin, generate_pin

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
