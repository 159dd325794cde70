"""A brand's PIN secrets from the environment: its pepper and the public key that seals its PINs.

Per brand, by default `<BRAND>_PIN_PEPPER` (hex) with `<BRAND>_PIN_PEPPER_ID`, and
`<BRAND>_PIN_SEAL_KEY` (base64 of the raw X25519 public key) with `<BRAND>_PIN_SEAL_KEY_ID`;
`[secrets]` in brand.toml may name other variables. `ROLLOUT_PIN_PEPPER` / `_ID` remain a
fallback pepper for brands without their own. A real PIN run needs both: without a seal key a
generated PIN could never be shown to the customer, and without a pepper a stolen hash gives
the PIN away in 10,000 guesses (`--unpeppered` accepts that knowingly).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rollout.brands import Brand
from rollout.pins import HashParams, Pepper, PepperError, PinHasher
from rollout.seal import PinSealer, SealKeyError

__all__ = ["BrandKeys", "KeyConfigError", "brand_keys"]

# Key ids starting with this are the committed demo keys of data/samples/demo-keys/.
DEMO_PREFIX = "demo"


class KeyConfigError(ValueError):
    """A brand's pepper or seal key is missing or malformed (never shows a secret)."""


@dataclass(frozen=True)
class BrandKeys:
    brand: str
    pepper: Pepper | None
    sealer: PinSealer | None

    def hasher(self, environ: Mapping[str, str] | None = None) -> PinHasher:
        try:
            return PinHasher(HashParams.from_env(environ), self.pepper)
        except ValueError as err:
            raise KeyConfigError(str(err)) from None

    @property
    def demo_key_ids(self) -> list[str]:
        """Key ids of committed demo keys in use (say so loudly: never for real customers)."""
        ids = [k.key_id for k in (self.pepper, self.sealer) if k is not None]
        return [k for k in ids if k.lower().startswith(DEMO_PREFIX)]


def brand_keys(
    brand: Brand, environ: Mapping[str, str] | None = None, *, unpeppered: bool = False
) -> BrandKeys:
    """The brand's pepper and sealer; raises `KeyConfigError` naming what to set.

    Both are required, the pepper unless `unpeppered`.
    """
    env = os.environ if environ is None else environ
    names = brand.secret_names
    sealer = _sealer(brand, env)
    pepper = None if unpeppered else _pepper(brand, env)
    if sealer is None:
        raise KeyConfigError(
            f"{brand.slug}: no seal key, so nobody could ever show a generated PIN to the "
            f"customer; set {names.seal_key} and {names.seal_key_id} "
            f"(a test pair: rollout keys new --brand {brand.slug} --out DIR)"
        )
    if pepper is None and not unpeppered:
        raise KeyConfigError(
            f"{brand.slug}: no pepper, so a leaked hash would give its PIN away; set "
            f"{names.pepper} and {names.pepper_id} (or ROLLOUT_PIN_PEPPER and "
            "ROLLOUT_PIN_PEPPER_ID for every brand), or run with --unpeppered"
        )
    return BrandKeys(brand.slug, pepper, sealer)


def _pepper(brand: Brand, env: Mapping[str, str]) -> Pepper | None:
    names = brand.secret_names
    variables = (names.pepper, names.pepper_id)
    if not any(env.get(v, "").strip() for v in variables):
        variables = ("ROLLOUT_PIN_PEPPER", "ROLLOUT_PIN_PEPPER_ID")  # one pepper for every brand
    hex_key, key_id = (env.get(v, "").strip() for v in variables)
    if not hex_key and not key_id:
        return None
    # Half a configuration (e.g. an empty secret mount) must not silently drop the pepper.
    if not hex_key or not key_id:
        raise KeyConfigError(f"{brand.slug}: set both {' and '.join(variables)}, or neither")
    try:
        return Pepper.from_hex(key_id, hex_key)
    except PepperError as err:
        raise KeyConfigError(f"{brand.slug}: {'/'.join(variables)}: {err}") from None


def _sealer(brand: Brand, env: Mapping[str, str]) -> PinSealer | None:
    names = brand.secret_names
    key = env.get(names.seal_key, "").strip()
    key_id = env.get(names.seal_key_id, "").strip()
    if not key and not key_id:
        return None
    if not key or not key_id:
        raise KeyConfigError(
            f"{brand.slug}: set both {names.seal_key} and {names.seal_key_id}, or neither"
        )
    try:
        return PinSealer.from_base64(brand.slug, key_id, key)
    except SealKeyError as err:
        raise KeyConfigError(f"{brand.slug}: {names.seal_key}/{names.seal_key_id}: {err}") from None
