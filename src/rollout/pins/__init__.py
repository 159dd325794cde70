"""Legi-PINs, one module per idea: which PINs are allowed (`policy`: FLOOR, the brands'
written rules, and STRICT, for generated PINs), the plaintext held only in memory and drawn
uniformly (`secret`), argon2id hashing with an optional pepper (`hashing`), and the batch the
PIN stage runs on every core (`batch`). Each module's docstring has the details; the stored
formats and the threat model are in docs/pin-hash-format.md.
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
