"""The bounce reader on 351 real messages from 72 mail systems (fixtures/bounces, from sisimai).

Goals (issue #9): at least 95 % of failed recipients found, at least 90 % agreement on the
verdict (hard / soft / delayed / not a bounce). The per-mail-system table is printed and kept
in docs/bounces.md.
"""

from __future__ import annotations

import pytest
from bounce_corpus import CORPUS, score_corpus, table


def test_the_reader_finds_the_failed_recipients_and_agrees_on_the_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    total, by_system = score_corpus()
    with capsys.disabled():
        print(f"\nbounce corpus ({CORPUS.name}): per mail system\n{table(total, by_system)}")
    assert total.files == 351 and total.recipients == 374
    assert total.recall >= 0.95, "\n".join(total.misses)
    assert total.agreement >= 0.90, "\n".join(total.misses)


def test_the_corpus_comes_with_its_licence_and_description() -> None:
    assert (
        "BSD 2-Clause" in (CORPUS / "LICENSE").read_text()
        or "BSD" in (CORPUS / "LICENSE").read_text()
    )
    assert "expected.json" in (CORPUS / "README.md").read_text()
