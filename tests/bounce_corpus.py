"""Scoring the bounce reader against the real messages in fixtures/bounces (see its README).

Two rates, per recipient the corpus expects:
- found: a failed recipient (expect hard, soft or delayed) is among the addresses of a notice
  the reader produced for that file;
- agreement: the reader's verdict for that recipient equals the expected one. A recipient that
  is not a bounce (expect none: ARF complaint, auto-reply, delivery report) agrees when the file
  yields a complaint, auto-reply or delivered notice and no bounce.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rollout.bounces import Bounce, Kind, read_message

CORPUS = Path(__file__).resolve().parent / "fixtures" / "bounces"
NOT_BOUNCES = {Kind.COMPLAINT, Kind.AUTOREPLY, Kind.DELIVERED}


@dataclass
class Score:
    files: int = 0
    failed: int = 0  # recipients expected hard, soft or delayed
    found: int = 0
    recipients: int = 0  # every expected recipient
    agree: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, other: Score) -> None:
        for name in ("files", "failed", "found", "recipients", "agree"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.misses += other.misses

    @property
    def recall(self) -> float:
        return self.found / self.failed if self.failed else 1.0

    @property
    def agreement(self) -> float:
        return self.agree / self.recipients if self.recipients else 1.0


def score_file(name: str, expected: dict[str, object]) -> Score:
    notices = list(read_message(name, (CORPUS / name).read_bytes()))
    bounces = [n for n in notices if isinstance(n, Bounce)]
    by_address: dict[str, Bounce] = {}
    for n in bounces:
        for address in n.addresses:
            by_address.setdefault(address.lower(), n)
    only_not_bounces = all(n.kind in NOT_BOUNCES for n in bounces) and bool(bounces)
    score = Score(files=1)
    recipients = expected["recipients"]
    assert isinstance(recipients, list)
    for r in recipients:
        score.recipients += 1
        expect, notice = r["expect"], by_address.get(r["recipient"])
        if expect == "none":
            ok = only_not_bounces
            got = "none" if ok else ",".join(sorted({n.kind.value for n in bounces})) or "-"
        else:
            score.failed += 1
            score.found += notice is not None
            got = notice.kind.value if notice else "not found"
            ok = got == expect
        score.agree += ok
        if not ok:
            score.misses.append(f"{name} {r['recipient']}: expected {expect}, got {got}")
    return score


def score_corpus() -> tuple[Score, dict[str, Score]]:
    expected = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
    total, by_system = Score(), defaultdict(Score)
    for name, entry in sorted(expected.items()):
        score = score_file(name, entry)
        total.add(score)
        by_system[str(entry["mta"])].add(score)
    return total, dict(by_system)


def table(total: Score, by_system: dict[str, Score]) -> str:
    """Markdown: one row per mail system, the total last."""
    rows = [
        "| mail system | files | failed recipients | found | verdicts | agree |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, s in sorted(by_system.items()):
        rows.append(f"| {name} | {s.files} | {s.failed} | {s.found} | {s.recipients} | {s.agree} |")
    rows.append(
        f"| **all** | {total.files} | {total.failed} | {total.found} ({total.recall:.1%}) "
        f"| {total.recipients} | {total.agree} ({total.agreement:.1%}) |"
    )
    return "\n".join(rows)
