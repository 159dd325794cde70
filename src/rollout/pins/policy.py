"""Which PINs are allowed.

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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import lru_cache
from itertools import pairwise

# `[0-9]`, not `\d` or str.isdigit(): those accept Arabic-Indic and other Unicode digits.
FOUR_DIGITS = re.compile(r"[0-9]{4}")
# Index n holds f"{n:04d}", so a draw needs no formatting and makes no new string.
ALL_PINS: tuple[str, ...] = tuple(f"{n:04d}" for n in range(10_000))

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

    NOTFOUR_DIGITS = "not_four_digits"
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
        if not all(isinstance(p, str) and FOUR_DIGITS.fullmatch(p) for p in self.common_pins):
            raise ValueError(f"policy {self.name!r}: common_pins must be 4-digit strings")
        static = {p: r for p in ALL_PINS if (r := self._pattern_reasons(p))}
        base = tuple(p for p in ALL_PINS if p not in static)
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
        if not isinstance(pin, str) or not FOUR_DIGITS.fullmatch(pin):
            return (Reason.NOTFOUR_DIGITS,)
        reasons = list(self._static.get(pin, ()))
        for form, rendered in zip(self.date_forms, self.date_strings(birth_date), strict=False):
            if rendered == pin and form.reason not in reasons:
                reasons.append(form.reason)
        return tuple(reasons)

    @property
    def rules(self) -> tuple[Reason, ...]:
        """Every reason this policy can refuse a PIN for, in rule order (what a customer must
        be told: the e-mail lists exactly these)."""
        reasons = [Reason.NOTFOUR_DIGITS, *(r for r in _PATTERN_REASONS if self._enforces(r))]
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
