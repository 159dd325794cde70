"""Hashing a PIN: argon2id, keyed first with a pepper when there is one.

argon2id via argon2-cffi; with a pepper, the PIN is first keyed with HMAC-SHA256 over a
domain tag, the customer id and the PIN.  Stored formats, the pepper's encoding and the
threat model are in docs/pin-hash-format.md.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from hashlib import sha256

from argon2 import low_level
from argon2.exceptions import HashingError, VerifyMismatchError

from rollout.pins.policy import FOUR_DIGITS
from rollout.pins.secret import SecretPin
from rollout.settings import argon2_cost

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
        cost = argon2_cost(env)  # parsed and bounded where every setting is
        params = cls(cost.time_cost, cost.memory_kib, cost.parallelism)
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
    if not isinstance(pin, str) or not FOUR_DIGITS.fullmatch(pin):
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
