"""How the e-mail looks to a person: each brand's HTML in headless Chromium at 1200 and 390 px.

Needs Debian's chromium (/usr/bin/chromium; .ci/run installs it). Outside CI, without it, the
tests are skipped. The screenshots are written under the test's tmp_path for a human look.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rollout.brands import load_brand
from rollout.messages import Composer
from rollout.model import PinSource, Recipient

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# A long name and number, as a phone must still show them without sideways scrolling.
CUSTOMER = Recipient(
    "JM0000000000012345", "Maximiliane-Johanna", "Muster", "m@example.com", PinSource.GENERATED
)
# The mail in an iframe exactly `width` px wide (a headless window is at least 500 px wide),
# probed once it is laid out; the findings land in an attribute that --dump-dom prints.
HARNESS = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="mail" style="width:WIDTHpx;height:3000px;border:0" srcdoc="SRCDOC"></iframe>
<script>
window.addEventListener('load', () => {
  const d = document.getElementById('mail').contentDocument, w = d.defaultView;
  const mast = d.querySelector('.masthead');
  const wide = [...d.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > w.innerWidth + 1).map(e => e.tagName);
  document.body.setAttribute('data-probe', JSON.stringify({
    scroll: d.documentElement.scrollWidth, inner: w.innerWidth,
    masthead: w.getComputedStyle(mast).backgroundColor, wordmark: mast.innerText.trim(),
    text: d.body.innerText, wide: wide}));
});
</script></body></html>"""


def chromium(page: Path, width: int, profile: Path, *args: str) -> str:
    assert CHROMIUM is not None, "CI must install Debian's chromium (see .ci/run)"
    done = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},2400",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rgb(colour: str) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.mark.slow
@pytest.mark.parametrize("width", [1200, 390])
@pytest.mark.parametrize("slug", ["congstar", "jamobil", "pennymobil"])
def test_the_mail_reads_as_the_brands_own_on_desktop_and_phone(
    tmp_path: Path, slug: str, width: int
) -> None:
    brand = load_brand(slug)
    composer = Composer(brand, "c")
    composer.validate()
    mail = composer.render(CUSTOMER).html
    page = tmp_path / f"{slug}.html"
    page.write_text(mail, encoding="utf-8")
    harness = tmp_path / f"{slug}-probe.html"
    filled = HARNESS.replace("WIDTH", str(width)).replace("SRCDOC", html.escape(mail))
    harness.write_text(filled, encoding="utf-8")

    shot = tmp_path / f"{slug}-{width}.png"
    chromium(page, width, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000  # a page was drawn (look at it: the path is kept)

    dom = chromium(
        harness,
        max(width, 800),
        tmp_path / "profile-dom",
        "--dump-dom",
        "--virtual-time-budget=10000",
    )
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[:500]
    probe = json.loads(html.unescape(found[1]))
    assert probe["inner"] == width
    assert probe["scroll"] <= width and probe["wide"] == []  # no sideways scrolling
    assert probe["masthead"] == rgb(brand.colour)
    assert probe["wordmark"] == brand.wordmark
    text = " ".join(probe["text"].split())
    assert "Hallo Maximiliane-Johanna," in text
    assert "Deine Kundennummer: JM0000000000012345" in text
    assert "Gib deine Legi-PIN nur im Gespräch mit dem Kundenservice an." in text
    assert all(line in text for line in brand.imprint)
