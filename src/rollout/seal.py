"""Sealed PINs: a copy of each generated PIN that only the brand's self-service backend can open.

The customer must be able to *see* a PIN we drew (meincongstar, the app: "Meine Daten"), but
the pipeline stores only an argon2id hash, which nobody can turn back into the PIN. So every
generated PIN is also encrypted to the brand's self-service backend with HPKE (RFC 9180), base
mode, suite DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-128-GCM. The pipeline holds only
the public key: it can seal, never open.

    $legipin-hpke$k=<key id>$<base64url, no padding, of enc || ciphertext>

`info` binds the copy to its brand and customer (the same length-prefixed encoding as the
pepper), so a sealed PIN moved to another customer or brand does not open. Format, suite ids
and how to open it in another language: docs/pin-hash-format.md, section 5.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from rollout.pins import KEY_ID_PATTERN, SecretPin, length_prefixed

__all__ = [
    "SCHEME",
    "SUITE_IDS",
    "KeyFiles",
    "PinSealer",
    "SealError",
    "SealKeyError",
    "is_sealed_pin",
    "new_key_pair",
    "open_pin",
    "read_private_key",
    "seal_info",
    "sealed_key_id",
    "write_key_pair",
]

SCHEME = "legipin-hpke"
# RFC 9180 identifiers of the suite, for the app team's HPKE library.
SUITE_IDS = {"kem_id": 0x0020, "kdf_id": 0x0001, "aead_id": 0x0001}
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
_INFO_TAG = b"legi-pin/v1"
_ENC_LEN = 32  # X25519 public key
_CIPHERTEXT_LEN = 4 + 16  # four ASCII digits and the AES-GCM tag
_SEALED_RE = re.compile(rf"\${SCHEME}\$k=(?P<kid>{KEY_ID_PATTERN})\$(?P<blob>[A-Za-z0-9_-]+)")
_KEY_ID_RE = re.compile(KEY_ID_PATTERN)


class SealKeyError(ValueError):
    """A seal key or its key id is missing or malformed (the message never shows the key)."""


class SealError(ValueError):
    """A sealed PIN does not open: wrong key, brand or customer, or it was changed."""


def seal_info(brand: str, customer_id: str) -> bytes:
    """HPKE `info`: enc("legi-pin/v1") || enc(brand slug) || enc(customer_id), all UTF-8."""
    return length_prefixed(_INFO_TAG, brand.encode("utf-8"), customer_id.encode("utf-8"))


@dataclass(frozen=True)
class PinSealer:
    """Seals PINs of one brand to its self-service backend's public key.  Picklable (Dask).

    Holds only the public key (raw 32 bytes); there is nothing secret in it.
    """

    brand: str
    key_id: str
    public_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _KEY_ID_RE.fullmatch(self.key_id):
            raise SealKeyError("seal key id must be 1-32 characters of A-Z a-z 0-9 . _ -")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise SealKeyError("seal key must be a raw 32-byte X25519 public key")
        try:
            X25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            raise SealKeyError("seal key is not a usable X25519 public key") from None

    @classmethod
    def from_base64(cls, brand: str, key_id: str, encoded: str) -> PinSealer:
        """The public key as base64 (standard or URL-safe, padding optional)."""
        return cls(brand, key_id.strip(), _b64decode(encoded.strip(), "seal key"))

    def seal(self, pin: SecretPin, customer_id: str) -> str:
        """The sealed copy of `pin` for `customer_id` (a new random encapsulation each time)."""
        if not isinstance(pin, SecretPin):
            raise TypeError("PinSealer.seal takes a SecretPin")
        key = X25519PublicKey.from_public_bytes(self.public_key)
        blob = _SUITE.encrypt(
            pin.reveal().encode("ascii"), key, info=seal_info(self.brand, customer_id)
        )
        return f"${SCHEME}$k={self.key_id}${_b64encode(blob)}"


def is_sealed_pin(value: object) -> bool:
    """Whether `value` has the sealed-PIN form (nothing is opened or checked beyond that)."""
    try:
        _parse(value)
    except SealError:
        return False
    return True


def sealed_key_id(sealed: str) -> str:
    """The key id a sealed PIN names: which private key opens it."""
    return _parse(sealed)[0]


def open_pin(
    sealed: str, private_key: X25519PrivateKey | bytes, brand: str, customer_id: str
) -> str:
    """The four digits inside `sealed`, for the self-service backend (the pipeline never calls it).

    `private_key` is the key whose id `sealed` names (see `sealed_key_id` during a rotation),
    as an `X25519PrivateKey` or its raw 32 bytes. Raises `SealError` when the copy does not
    open: another key, another brand or customer id, or a changed byte.
    """
    _, blob = _parse(sealed)
    key = _private_key(private_key)
    try:
        plain = _SUITE.decrypt(blob, key, info=seal_info(brand, customer_id))
    except (InvalidTag, ValueError):
        raise SealError("sealed PIN does not open with this key, brand and customer id") from None
    pin = plain.decode("ascii", errors="replace")
    if len(pin) != 4 or not pin.isascii() or not pin.isdigit():
        raise SealError("sealed PIN holds something other than four digits")
    return pin


def new_key_pair() -> tuple[bytes, bytes]:
    """(private, public), each the raw 32 bytes of an X25519 key."""
    private = X25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    return (
        private.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
        private.public_key().public_bytes(raw, serialization.PublicFormat.Raw),
    )


@dataclass(frozen=True)
class KeyFiles:
    private: Path  # base64 of the raw private key, mode 0600
    public: Path  # base64 of the raw public key
    public_b64: str
    key_id: str


def write_key_pair(out_dir: Path, brand: str, key_id: str) -> KeyFiles:
    """A new key pair in `out_dir` as <brand>-<key id>.private.key (0600) and .public.key.

    Refuses to overwrite an existing file. The private key is written, never returned.
    """
    if not _KEY_ID_RE.fullmatch(key_id):
        raise SealKeyError("seal key id must be 1-32 characters of A-Z a-z 0-9 . _ -")
    out_dir.mkdir(parents=True, exist_ok=True)
    private, public = new_key_pair()
    stem = out_dir / f"{brand}-{key_id}"
    private_path = stem.with_name(stem.name + ".private.key")
    public_path = stem.with_name(stem.name + ".public.key")
    for path in (private_path, public_path):
        if path.exists():
            raise SealKeyError(f"{path} exists; choose another --key-id")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(base64.b64encode(private).decode("ascii") + "\n")
    public_b64 = base64.b64encode(public).decode("ascii")
    public_path.write_text(public_b64 + "\n", encoding="ascii")
    return KeyFiles(private_path, public_path, public_b64, key_id)


def read_private_key(path: Path) -> X25519PrivateKey:
    """A private key file written by `write_key_pair` (base64 of the raw 32 bytes)."""
    return _private_key(_b64decode(path.read_text(encoding="ascii").strip(), f"{path}"))


def _private_key(key: X25519PrivateKey | bytes) -> X25519PrivateKey:
    if isinstance(key, X25519PrivateKey):
        return key
    if not isinstance(key, bytes) or len(key) != 32:
        raise SealKeyError("private key must be an X25519PrivateKey or its raw 32 bytes")
    return X25519PrivateKey.from_private_bytes(key)


def _parse(sealed: object) -> tuple[str, bytes]:
    match = _SEALED_RE.fullmatch(sealed) if isinstance(sealed, str) else None
    if match is None:
        raise SealError("not a sealed Legi-PIN ($legipin-hpke$k=<key id>$<base64url>)")
    try:
        blob = base64.urlsafe_b64decode(match["blob"] + "=" * (-len(match["blob"]) % 4))
    except (binascii.Error, ValueError):
        raise SealError("sealed Legi-PIN: bad base64url") from None
    if len(blob) != _ENC_LEN + _CIPHERTEXT_LEN:
        raise SealError("sealed Legi-PIN has the wrong length")
    return match["kid"], blob


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Standard or URL-safe base64, padding optional; errors never echo the input."""
    cleaned = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SealKeyError(f"{what} must be base64") from None
