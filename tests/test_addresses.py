"""Recipient addresses and names from untrusted exports."""

from __future__ import annotations

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage

import pytest

from rollout import addresses
from rollout.addresses import NAME_MAX_LENGTH, check_address, clean_name, redact_addresses
from synthetic import DOMAINS, FIRST_NAMES, LAST_NAMES, email_local


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("max.mustermann@example.com", "max.mustermann@example.com"),
        ("Max.Mustermann@EXAMPLE.COM", "Max.Mustermann@example.com"),  # local part keeps its case
        ("  max@example.org ", "max@example.org"),
        ("max+rollout@mail.example.net", "max+rollout@mail.example.net"),
        ("o'brien@example.com", "o'brien@example.com"),  # legal atext, via email-validator
        ("kontakt@bäckerei-müller.example.com", "kontakt@xn--bckerei-mller-bfb28a.example.com"),
        (
            "kontakt@xn--bckerei-mller-bfb28a.example.com",
            "kontakt@xn--bckerei-mller-bfb28a.example.com",
        ),
        ("Postmaster@example.com", "postmaster@example.com"),  # RFC 2142 names are case-free
    ],
)
def test_usable_addresses_are_normalised(raw: str, normalised: str) -> None:
    assert check_address(raw) == (normalised, None)


@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_address_is_missing(raw: str) -> None:
    assert check_address(raw) == ("", "missing_email")


@pytest.mark.parametrize(
    "raw",
    [
        "max.mustermann@",
        "max.mustermann",
        "@example.com",
        "max@@example.com",
        "max..m@example.com",
        "max@example",  # no dot
        "max@localhost",
        "max@host.test",  # special-use domain
        "max@example.com.",
        "max mustermann@example.com",
        # header injection and other control characters, wherever they are
        "anna@example.com\r\nBcc: evil@example.net",
        "anna@example.com\nBcc: evil@example.net",
        "anna@example.com\r",
        "\r\n",
        "anna@exam\x00ple.com",
        "anna@example.com\t",
        "anna@example.com\u2028Bcc: evil@example.net",
        # several recipients, display names, comments, quoting, encoded words
        "a@example.com, b@example.com",
        "a@example.com;b@example.com",
        "Max Mustermann <max@example.com>",
        "<max@example.com>",
        '"Max" max@example.com',
        '"max mustermann"@example.com',
        "max(comment)@example.com",
        "=?utf-8?q?evil=0A?=@example.com",
        "max@[192.0.2.1]",
        # needs SMTPUTF8
        "jürgen.groß@example.com",
        "x" * 65 + "@example.com",
        "max@" + "a" * 64 + ".example.com",
    ],
)
def test_unusable_addresses_are_bad(raw: str) -> None:
    assert check_address(raw) == ("", "bad_email")


def test_fast_path_gives_what_email_validator_gives() -> None:
    """The regex shortcut must never disagree with the full check it skips."""
    samples = [
        f"{email_local(f, s)}{n}@{d}"
        for f in FIRST_NAMES[:12]
        for s in LAST_NAMES[:12]
        for n, d in (("", DOMAINS[0]), ("7", DOMAINS[3]), ("", DOMAINS[5].upper()))
    ]
    samples += ["a@b.co", "x_y-z+t@a-b.example.org", "INFO@example.com", "ab@x--y.example.com"]
    for raw in samples:
        match = addresses._PLAIN_ADDRESS.fullmatch(raw)
        fast = addresses._plain(match) if match else None
        if fast is not None:
            assert (fast, None) == addresses._validated(raw), raw


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Jürgen", "Jürgen"),
        ("  Hans-Peter   Müller ", "Hans-Peter Müller"),
        ("Müller\r\nBcc: evil@example.com", "Müller Bcc: evil@example.com"),
        ("Anna\x00\x07\x1bMaria", "Anna Maria"),
        ("Line\u2028Sep", "Line Sep"),
        ("Ev\u202eil\u200b", "Evil"),  # bidi override and zero-width space dropped
        ("=?utf-8?q?Max=0ABcc:evil@example.com?=", "utf-8?q?Max=0ABcc:evil@example.com?="),
        ("==??utf-8?b?x?=", "utf-8?b?x?="),  # removing one "=?" must not leave another
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),  # templates escape HTML
        ("Mu\u0308ller", "Müller"),  # NFC
        ("", ""),
    ],
)
def test_names_are_cleaned(raw: str, clean: str) -> None:
    assert clean_name(raw) == clean


def test_names_are_cut_to_the_limit() -> None:
    assert clean_name("x" * 500) == "x" * NAME_MAX_LENGTH
    assert clean_name("a " * 60).endswith("a")  # no trailing space after the cut


def test_cleaned_encoded_word_name_cannot_add_a_bcc_header() -> None:
    """CVE-2024-6923: on Python 3.11.7 the raw name puts a bare LF and `Bcc:` into the header."""
    attack = "=?utf-8?q?Max=0ABcc:evil@example.com?="
    message = EmailMessage(policy=policy.SMTP)
    message["To"] = Address(display_name=clean_name(attack), addr_spec="max@example.com")
    message.set_content("Hallo")
    head = message.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert not any(line.lower().startswith(b"bcc") for line in head.split(b"\r\n"))


@pytest.mark.parametrize(
    ("reply", "redacted"),
    [
        (
            "550 5.1.1 <felix.muster@example.org>: Recipient address rejected: User unknown",
            "550 5.1.1 <address>: Recipient address rejected: User unknown",
        ),
        ("452 4.2.2 mailbox of jürgen@bücher.de is full", "452 4.2.2 mailbox of <address> is full"),
        ("554 5.7.1 Message rejected as spam", "554 5.7.1 Message rejected as spam"),
    ],
)
def test_failure_reasons_lose_the_addresses_in_them(reply: str, redacted: str) -> None:
    assert redact_addresses(reply) == redacted
