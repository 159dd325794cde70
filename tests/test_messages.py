"""The Legi-PIN e-mail: real templates rendered, messages parsed back with the stdlib parser."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import inspect
import re
import shutil
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from rollout.addresses import clean_name
from rollout.brands import load_brand, templates_root
from rollout.messages import (
    HEADER_NAMES,
    Composer,
    TemplateProblem,
    german_date,
    join_de,
    sample_recipient,
    to_bytes,
)
from rollout.messages.skeletons import ID_SLOT, NAME_SLOT, EncodedSkeleton, fill, skeleton
from rollout.messages.wire import encoded_words, quoted_printable
from rollout.model import PinSource, Recipient

BRANDS = ("congstar", "jamobil", "pennymobil")
MANDATORY = {"congstar": "16. Mai 2022", "jamobil": "23. Mai 2022", "pennymobil": "23. Mai 2022"}
WHEN = datetime(2022, 5, 2, 9, 30, tzinfo=UTC)
MAX = Recipient("4711", "Max", "Mustermann", "max@example.com", PinSource.GENERATED)
ENCODED_WORD_ATTACK = "=?utf-8?q?Max=0ABcc:evil@example.com?="


@pytest.fixture(scope="module")
def composers() -> dict[str, Composer]:
    return {slug: Composer(load_brand(slug), "legi-pin-2022") for slug in BRANDS}


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def bodies(msg: EmailMessage) -> tuple[str, str]:
    """Plain and HTML part, decoded, with "\n" line ends (the parser keeps the wire's CRLF)."""
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    plain: str = text.get_content()
    rich: str = html.get_content()
    return plain.replace("\r\n", "\n"), rich.replace("\r\n", "\n")


def flat(part: str) -> str:
    """Text as a reader sees it: tags dropped, line breaks and runs of spaces as one space."""
    return " ".join(re.sub(r"<[^>]+>", "", part).split())


def copy_root(tmp_path: Path, *slugs: str) -> Path:
    """A private templates root to break or extend."""
    root = tmp_path / "templates"
    for name in ("_base", *slugs):
        shutil.copytree(templates_root() / name, root / name)
    return root


# -- headers and structure -------------------------------------------------------------------


@pytest.mark.parametrize("slug", BRANDS)
def test_headers_parse_back(composers: dict[str, Composer], slug: str) -> None:
    composer = composers[slug]
    brand = composer.brand
    msg = parse(composer.compose_bytes(MAX, date=WHEN))

    sender = msg["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (brand.sender_name, brand.sender_address)
    to = msg["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in to] == [("Max Mustermann", "max@example.com")]
    assert msg["Subject"] == (
        f"Ab {MANDATORY[slug]} brauchst du deine Legi-PIN für den {brand.display_name} "
        "Kundenservice"
    )
    assert msg["Date"].datetime == WHEN
    assert msg["Message-ID"] == composer.message_id("4711")
    assert re.fullmatch(rf"<[0-9a-f]{{32}}@{re.escape(brand.sender_domain)}>", msg["Message-ID"])
    assert msg["MIME-Version"] == "1.0"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert {k.lower() for k in msg} == HEADER_NAMES
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())


def test_wire_form_is_7bit_crlf_and_short_lines(composers: dict[str, Composer]) -> None:
    data = composers["congstar"].compose_bytes(MAX, date=WHEN)
    assert data.isascii()  # umlauts travel quoted-printable / RFC 2047: no 8BITMIME needed
    assert data.endswith(b"\r\n")
    lines = data.split(b"\r\n")
    assert not any(b"\n" in line or b"\r" in line for line in lines)
    assert max(len(line) for line in lines) <= 78
    assert b"Content-Transfer-Encoding: quoted-printable" in data


@pytest.mark.parametrize(
    "recipient",
    [
        MAX,
        sample_recipient(),
        Recipient("1", "Jürgen", "Müller-Lüdenscheidt" * 5, "j@example.com", PinSource.KEPT),
        Recipient("2", 'Dr. "Max"', "O'Brien\\", "x" * 50 + "@example.com", PinSource.KEPT),
        Recipient("3", "", "", "nobody@example.com", PinSource.KEPT),
    ],
)
def test_fast_wire_form_equals_stdlib_serialisation(
    composers: dict[str, Composer], recipient: Recipient
) -> None:
    composer = composers["jamobil"]
    msg = composer.compose(recipient, date=WHEN)
    expected = msg.as_bytes(policy=email.policy.SMTP)
    assert composer.compose_bytes(recipient, date=WHEN) == expected == to_bytes(msg)
    parsed_to = parse(expected)["To"].addresses[0]
    assert parsed_to.addr_spec == recipient.email
    name = clean_name(f"{recipient.first_name} {recipient.last_name}")
    # A long name needs several encoded words; Python's parser (unlike RFC 2047 and mail
    # clients) keeps the folding space between them, so compare without spaces.
    assert parsed_to.display_name.replace(" ", "") == name.replace(" ", "")


def test_message_id_is_stable_and_distinct(composers: dict[str, Composer]) -> None:
    composer = composers["congstar"]
    first = parse(composer.compose_bytes(MAX))["Message-ID"]
    assert first == parse(composer.compose_bytes(MAX))["Message-ID"]
    assert first != composer.message_id("4712")
    assert first != Composer(composer.brand, "another-campaign").message_id("4711")
    assert first != composers["jamobil"].message_id("4711")


def test_date_must_be_timezone_aware(composers: dict[str, Composer]) -> None:
    with pytest.raises(ValueError, match="timezone"):
        composers["congstar"].compose(MAX, date=datetime(2022, 5, 2))


# -- content -----------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", BRANDS)
def test_both_parts_carry_the_brand_facts(composers: dict[str, Composer], slug: str) -> None:
    for part in map(flat, bodies(parse(composers[slug].compose_bytes(MAX)))):
        assert f"ab dem {MANDATORY[slug]} hilft dir" in part
        assert "Deine Kundennummer: 4711" in part  # what they will be asked for
        for fact in ("Legi-PIN", "1234", "5678", "2222", "Geburtsjahr", "SIM-Karte"):
            assert fact in part
        assert "wenn du deine persönliche Legitimations-PIN (kurz: Legi-PIN) nennst" in part
        # anti-phishing: asked for only in a conversation with the Kundenservice
        assert "Wir fragen danach nur, wenn du mit dem" in part
        assert "niemals per E-Mail oder über einen Link" in part
        if slug == "congstar":
            assert "in meincongstar und in der congstar App im Bereich „Meine Daten“" in part
            assert "Online-Kundencenter" not in part
        else:
            assert "meincongstar" not in part
            assert "App im Bereich „Meine Daten - Legitimations-PIN“" in part
            assert "Online-Kundencenter gibt es bei" in part


def test_variants_differ_in_the_right_way(composers: dict[str, Composer]) -> None:
    composer = composers["pennymobil"]
    kept = dataclasses.replace(MAX, pin_source=PinSource.KEPT)
    for generated_part, kept_part in zip(
        map(flat, bodies(parse(composer.compose_bytes(MAX)))),
        map(flat, bodies(parse(composer.compose_bytes(kept)))),
        strict=True,
    ):
        assert (
            "zufällig erzeugte Legi-PIN" in generated_part and "bleibt gültig" not in generated_part
        )
        assert "bleibt gültig" in kept_part and "zufällig" not in kept_part


def test_greeting_uses_first_name_or_none(composers: dict[str, Composer]) -> None:
    composer = composers["congstar"]
    text, html = bodies(parse(composer.compose_bytes(MAX)))
    assert text.startswith("Hallo Max,\n\n") and "Hallo Max," in html
    nameless = dataclasses.replace(MAX, first_name=" ", last_name="")
    text, html = bodies(parse(composer.compose_bytes(nameless)))
    assert text.startswith("Hallo,\n") and "Hallo," in html
    assert parse(composer.compose_bytes(nameless))["To"] == "max@example.com"


def test_no_pin_can_reach_the_message(composers: dict[str, Composer]) -> None:
    # There is no PIN input at all ...
    assert "pin" not in {f.name for f in dataclasses.fields(Recipient)}
    for method in (Composer.compose, Composer.compose_bytes, Composer.render):
        assert not any("pin" in p for p in inspect.signature(method).parameters)
    # ... and the only 4-digit numbers are the year, the rule examples and the customer number.
    msg = parse(composers["jamobil"].compose_bytes(MAX))
    text = re.sub(r"#[0-9a-fA-F]{6}\b", "", " ".join((msg["Subject"], *bodies(msg))))  # colours
    found = set(re.findall(r"(?<!\d)\d{4}(?!\d)", text))
    rule_examples = {"1234", "5678", "4321", "9876", "2222", "1985", "2403", "0324"}
    assert found <= {"2022", "4711", *rule_examples}


# -- safety ------------------------------------------------------------------------------------


def test_hostile_name_is_escaped_in_html_only(composers: dict[str, Composer]) -> None:
    text, html = bodies(parse(composers["congstar"].compose_bytes(sample_recipient())))
    assert "Hallo &lt;script&gt;alert(1)&lt;/script&gt;," in html
    assert "<script" not in html.lower()
    assert "Hallo <script>alert(1)</script>," in text  # plain text is not HTML-escaped


def test_text_and_subject_are_not_html_escaped(tmp_path: Path) -> None:
    brand = dataclasses.replace(load_brand("congstar"), display_name="A&B <Mobil>")
    msg = parse(Composer(brand, "c").compose_bytes(MAX))
    text, html = bodies(msg)
    assert "A&B <Mobil> Kundenservice" in msg["Subject"]
    assert "der A&B <Mobil> Kundenservice" in " ".join(text.split())  # not flat(): no tags
    assert "A&amp;B &lt;Mobil&gt;" in html


def test_css_is_inlined(composers: dict[str, Composer]) -> None:
    _, html = bodies(parse(composers["congstar"].compose_bytes(MAX)))
    assert "<style" not in html and "<link" not in html
    assert re.search(r'<p style="[^"]*margin', html)
    assert re.search(r'<body style="[^"]*background-color', html)


@pytest.mark.parametrize(
    "name",
    [
        ENCODED_WORD_ATTACK,  # CVE-2024-6923 on this Python (3.11.7)
        f"Max {ENCODED_WORD_ATTACK} Müller",
        "==??utf-8?q?x=0ABcc:evil@example.com?=",  # "=?" reappears when one is removed
        "Max\r\nBcc: evil@example.com",
        "Max\u2028Bcc: evil@example.com",
        "Max\x85Bcc: evil@example.com",
    ],
)
def test_no_header_injection_through_the_name(composers: dict[str, Composer], name: str) -> None:
    recipient = dataclasses.replace(MAX, first_name=name, last_name=name)
    data = composers["congstar"].compose_bytes(recipient)
    msg = parse(data)
    assert {k.lower() for k in msg} == HEADER_NAMES
    assert [a.addr_spec for a in msg["To"].addresses] == ["max@example.com"]
    assert not re.search(rb"^(bcc|cc):", data, re.IGNORECASE | re.MULTILINE)


@pytest.mark.parametrize(
    "address", ["max@example.com\r\nBcc: evil@example.com", "max@example.com\n", "a@b.de, c@d.de"]
)
def test_unusable_address_raises_value_error(composers: dict[str, Composer], address: str) -> None:
    with pytest.raises(ValueError):
        composers["congstar"].compose_bytes(dataclasses.replace(MAX, email=address))


def test_idn_domain_goes_out_as_punycode(composers: dict[str, Composer]) -> None:
    recipient = dataclasses.replace(MAX, email="max@straße.de")
    msg = parse(composers["congstar"].compose_bytes(recipient))
    assert msg["To"].addresses[0].addr_spec == "max@xn--strae-oqa.de"


def test_subject_is_always_one_line(tmp_path: Path) -> None:
    root = copy_root(tmp_path, "congstar")
    (root / "congstar" / "subject.txt.j2").write_text(
        "Zeile eins\r\nBcc: evil@example.com\n\tZeile\u2028drei {{ brand.display_name }}\n"
    )
    msg = parse(Composer(load_brand("congstar"), "c", root).compose_bytes(MAX))
    assert msg["Subject"] == "Zeile eins Bcc: evil@example.com Zeile drei congstar"
    assert {k.lower() for k in msg} == HEADER_NAMES


# -- templates ---------------------------------------------------------------------------------


def test_validate_passes_for_every_brand(composers: dict[str, Composer]) -> None:
    for composer in composers.values():
        composer.validate()


def test_typo_in_template_fails_validate_naming_the_file(tmp_path: Path) -> None:
    root = copy_root(tmp_path, "jamobil")
    (root / "jamobil" / "body.html.j2").write_text(
        '{% extends "_base/layout.html.j2" %}\n'
        "{% block where_note %}\n<p>{{ brand.dispaly_name }}</p>\n{% endblock %}\n"
    )
    composer = Composer(load_brand("jamobil"), "c", root)  # compiles fine
    with pytest.raises(TemplateProblem) as caught:
        composer.validate()
    message = str(caught.value)
    assert "jamobil/body.html.j2:3" in message and "dispaly_name" in message
    assert "\n" not in message


def test_syntax_error_in_layout_is_a_template_problem(tmp_path: Path) -> None:
    root = copy_root(tmp_path, "jamobil")
    layout = root / "_base" / "layout.txt.j2"
    layout.write_text(layout.read_text() + "{% if %}\n")
    with pytest.raises(TemplateProblem, match=r"_base/layout\.txt\.j2:\d+"):
        Composer(load_brand("jamobil"), "c", root).validate()


def test_safe_filter_on_a_name_fails_validate(tmp_path: Path) -> None:
    root = copy_root(tmp_path, "congstar")
    (root / "congstar" / "body.html.j2").write_text(
        '{% extends "_base/layout.html.j2" %}\n'
        "{% block greeting %}<p>Hallo {{ first_name|safe }},</p>{% endblock %}\n"
    )
    with pytest.raises(TemplateProblem, match="unescaped"):
        Composer(load_brand("congstar"), "c", root).validate()


def test_brand_with_only_brand_toml_uses_base_defaults(tmp_path: Path) -> None:
    root = copy_root(tmp_path)
    (root / "newbrand").mkdir()
    (root / "newbrand" / "brand.toml").write_text(
        'display_name = "Neu Mobil"\nmandatory_date = 2022-06-01\n'
        'sender_name = "Neu Mobil Service"\nsender_address = "service@neu.example"\n'
        'website = "https://neu.example"\npin_locations = ["in der Neu App"]\n'
        'pin_menu = "Konto"\n'
    )
    composer = Composer(load_brand("newbrand", root), "c", root)
    composer.validate()
    msg = parse(composer.compose_bytes(MAX))
    assert (
        msg["Subject"]
        == "Ab 1. Juni 2022 brauchst du deine Legi-PIN für den Neu Mobil Kundenservice"
    )
    assert "in der Neu App im Bereich „Konto“" in flat(bodies(msg)[0])


def test_german_helpers() -> None:
    assert german_date(date(2022, 3, 1)) == "1. März 2022"
    assert german_date(date(2022, 12, 31)) == "31. Dezember 2022"
    assert join_de([]) == "" and join_de(["a"]) == "a"
    assert join_de(["a", "b", "c"]) == "a, b und c"


NAMES = [
    "Jörg",
    "Ann & Bo",
    "<b>fett</b>",
    "",
    "Zoë\xa0Q",
    'O\'Neil "Q"',
    "=?utf-8?q?x?=",
    "rolloutslotcustomeridzq",  # the customer number's placeholder: stays a name
]


@pytest.mark.parametrize("source", list(PinSource))
def test_mails_built_from_skeletons_equal_full_rendering(source: PinSource) -> None:
    composer = Composer(load_brand("jamobil"), "c")
    composer.validate()
    assert composer._skeletons_checked  # the fast path is what is compared here
    in_full = Composer(load_brand("jamobil"), "c")  # not validated: renders every mail in full
    assert not in_full._skeletons_checked
    sent = datetime(2022, 5, 2, 9, tzinfo=UTC)
    for i, name in enumerate(NAMES):
        r = Recipient(f"K&{i}<", name, "Muster", f"k{i}@example.com", source)
        assert composer.render(r) == composer._render_in_full(composer._context(r))
        assert composer.compose_bytes(r, date=sent) == in_full.compose_bytes(r, date=sent)


# Lines quoted-printable treats specially: long (soft breaks), a lone dot, trailing blanks,
# '=', non-ASCII, empty lines, a slot at either end and twice on a line.
PART = (
    f"Hallo {NAME_SLOT},\n\n"
    + "lang " * 40
    + f"{NAME_SLOT}\n.\nnah \t\n{ID_SLOT}\nx=y ü\n\n"
    + f"{ID_SLOT} und {NAME_SLOT} {'ß' * 50}{ID_SLOT}\r\nEnde {NAME_SLOT}\r\n\r{NAME_SLOT}"
)
VALUES = ["", "Jörg", "a" * 90, " ", ".", "=?x?=", "Zoë\xa0Q 🙂", "K-1\n.", "x\u2028y", "\r", "\nX"]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("part", [PART, PART + "\n", "", "ohne Platzhalter"])
def test_an_encoded_skeleton_fills_as_encoding_the_whole_part_would(part: str, value: str) -> None:
    encoded = EncodedSkeleton.of(skeleton(part))
    # Only the lines with a slot are encoded per mail.
    assert len(encoded.lines) == (6 if part.startswith(PART) else 0)
    values = {NAME_SLOT: value, ID_SLOT: value[::-1] + "K"}
    assert encoded.fill(values) == quoted_printable(fill(skeleton(part), values))


@pytest.mark.parametrize(
    ("part", "greeting"),
    [
        ("html", "<p>Hallo {{ first_name|upper }},</p>"),
        ("txt", "Hallo {{ first_name|upper }},"),
    ],
)
def test_a_template_that_transforms_the_name_is_rendered_in_full(
    tmp_path: Path, part: str, greeting: str
) -> None:
    root = copy_root(tmp_path, "congstar")
    (root / "congstar" / f"body.{part}.j2").write_text(
        f'{{% extends "_base/layout.{part}.j2" %}}\n'
        f"{{% block greeting %}}{greeting}{{% endblock %}}\n"
    )
    composer = Composer(load_brand("congstar"), "c", root)
    composer.validate()
    mail = composer.render(Recipient("K1", "Jörg", "M", "j@example.com", PinSource.KEPT))
    assert "Hallo JÖRG," in (mail.html if part == "html" else mail.text)


@pytest.mark.parametrize("name", ["Jörg", "ü" * 23, "Zoë 🙂" * 12, "a" * 44 + "ü", "🙂" * 30])
def test_encoded_words_hold_whole_characters_within_the_limits(name: str) -> None:
    encoded = encoded_words(name)
    lines = f"From: {encoded}".split("\r\n")
    assert max(len(line) for line in lines) <= 78
    words = [line.strip() for line in encoded.split("\r\n")]
    assert all(len(w) <= 75 and w.startswith("=?utf-8?b?") and w.endswith("?=") for w in words)
    # Each word decodes on its own (no character split between two) and together they are it.
    decoded = [base64.b64decode(w[len("=?utf-8?b?") : -2]).decode("utf-8") for w in words]
    assert "".join(decoded) == name
