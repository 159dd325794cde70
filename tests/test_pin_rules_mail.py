"""One rule set: the e-mail lists every rule the app's check of a customer-chosen PIN enforces."""

from __future__ import annotations

import dataclasses
import re
import shutil
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from rollout.brands import BrandError, load_brand
from rollout.messages import Composer
from rollout.model import PinSource, Recipient
from rollout.pins import POLICIES, STRICT, check_pin, generate_pin

# What a reader must find in the list for each reason code (written out by hand).
WORDS = {
    "not_four_digits": "genau 4 Ziffern",
    "ascending_run": "aufsteigende Zahlenfolge",
    "descending_run": "absteigende Zahlenfolge",
    "repeated_digit": "viermal dieselbe Ziffer",
    "constant_step": "in gleichen Schritten",
    "wrap_around": "über die 0 hinweg",
    "common_pin": "besonders oft gewählten",
    "birth_year": "Geburtsjahr",
    "birthday": "Geburtstag",
    "birth_month_year": "Monat und Jahr deiner Geburt",
    "birth_day_year": "Tag und Jahr deiner Geburt",
}
BORN = date(1985, 3, 24)  # the birth date the e-mail's date examples are written for
CUSTOMER = Recipient("4711", "Max", "Muster", "max@example.com", PinSource.KEPT)


def listed_rules(brand_slug: str, policy_name: str) -> list[str]:
    brand = dataclasses.replace(load_brand(brand_slug), customer_pin_policy=policy_name)
    composer = Composer(brand, "c")
    composer.validate()
    msg = message_from_bytes(composer.compose_bytes(CUSTOMER), policy=policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    section = text.split("WENN DU EINE EIGENE LEGI-PIN WÄHLST", 1)[1].split("WENN DU UNS", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def every_reason(policy_name: str) -> set[str]:
    check = POLICIES[policy_name]
    dates = [None, BORN, date(2000, 2, 29), date(1990, 1, 1), date(1979, 12, 31)]
    pins = [f"{n:04d}" for n in range(10_000)] + ["123", "12a4", "١٢٣٤"]
    return {r for born in dates for pin in pins for r in check_pin(pin, born, check)}


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("brand", ["congstar", "jamobil", "pennymobil"])
def test_the_mail_lists_every_rule_the_check_enforces(brand: str, policy_name: str) -> None:
    lines = listed_rules(brand, policy_name)
    enforced = every_reason(policy_name)
    assert enforced == set(POLICIES[policy_name].rules)
    assert len(lines) == len(enforced)  # one line per rule, nothing the check does not do
    for code in enforced:
        assert [line for line in lines if WORDS[code] in line], f"{code} is not in the mail"
    if "common_pin" in enforced:
        common = next(line for line in lines if WORDS["common_pin"] in line)
        assert all(pin in common for pin in POLICIES[policy_name].common_pins_of_their_own)


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_every_example_in_the_mail_is_refused_for_the_rule_it_illustrates(policy_name: str) -> None:
    for line in listed_rules("congstar", policy_name):
        code = next(c for c, words in WORDS.items() if words in line)
        for example in re.findall(r"(?<![\d.])\d{4}(?!\d)", line):
            assert code in check_pin(example, BORN, POLICIES[policy_name]), (line, example)


def test_brands_judge_customer_pins_by_their_published_rules_and_generate_strictly() -> None:
    for slug in ("congstar", "jamobil", "pennymobil"):
        assert load_brand(slug).customer_policy is POLICIES["floor"]
    # A PIN the floor accepts but the strict policy refuses: fine when chosen, never drawn.
    assert check_pin("2468", None, POLICIES["floor"]) == ()
    assert check_pin("2468", None, STRICT) == ("constant_step",)
    assert all(generate_pin(BORN).reveal() in STRICT.allowed(BORN) for _ in range(200))


def test_an_unknown_policy_or_colour_in_brand_toml_is_refused(tmp_path: Path) -> None:
    shutil.copytree(load_brand("congstar").folder.parent, tmp_path / "t")
    toml = tmp_path / "t" / "congstar" / "brand.toml"
    original = toml.read_text(encoding="utf-8")
    toml.write_text(original.replace('"floor"', '"lenient"'), encoding="utf-8")
    with pytest.raises(BrandError, match="'customer_pin_policy': must be one of floor, strict"):
        load_brand("congstar", tmp_path / "t")
    toml.write_text(original.replace('colour = "#', 'colour = "red'), encoding="utf-8")
    with pytest.raises(BrandError, match="'colour': must be #RRGGBB"):
        load_brand("congstar", tmp_path / "t")
