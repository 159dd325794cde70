"""The plaintext PIN, held only in memory: drawn uniformly from what the policy allows."""

from __future__ import annotations

import hmac
import secrets
from datetime import date
from typing import NoReturn

from rollout.pins.policy import ALL_PINS, FOUR_DIGITS, STRICT, PinPolicy


class SecretPin:
    """A plaintext PIN that masks itself in reprs, logs and f-strings and refuses pickling.

    Pickling is refused so a PIN cannot end up in a task result store; equality is
    constant-time; instances are unhashable (defining __eq__ disables __hash__).
    """

    __slots__ = ("_pin",)

    def __init__(self, pin: str) -> None:
        if not isinstance(pin, str) or not FOUR_DIGITS.fullmatch(pin):
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
        pin = ALL_PINS[secrets.randbelow(10_000)]
        if pin in base and pin not in refused_dates:
            return SecretPin(pin)
