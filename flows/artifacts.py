"""What the Prefect UI shows of a run: readable run names, markdown tables, separate histories.

- Flow runs are named after what ran: `pins-congstar-2026-11-30T08:00` (Europe/Berlin time of
  the run's scheduled start), not a random adjective-animal pair.
- Tables have metrics as rows and brands as columns, as the command prints them; cells hold
  counts (and fixed reason names), never a customer's data or a server's words.
- Artifact keys name the state dir (its folder name and a short hash of its full path), so the
  histories of a rehearsal and of production do not mix. Prefect allows lowercase letters,
  digits and dashes in a key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from prefect.runtime import flow_run

from rollout.plan import BERLIN

_NOT_IN_KEY = re.compile(r"[^a-z0-9]+")
# Cells keyed by server text (failure reasons): the artifact counts them by reply code only.
_TOTAL_ONLY = frozenset({"failed"})


def run_name(kind: str) -> Callable[[], str]:
    """A `flow_run_name` for Prefect: `<kind>-<brand or brands>-<YYYY-MM-DDTHH:MM>`."""

    def name() -> str:
        params: Mapping[str, object] = flow_run.parameters or {}
        brand = params.get("brand")
        brands = _setting(params.get("settings"), "brands")
        if isinstance(brand, str):
            who = brand
        elif isinstance(brands, list) and brands:
            who = "+".join(str(b) for b in brands)
        else:
            who = "all-brands"
        kind_ = "resend" if kind == "notify" and params.get("resend") else kind
        when = flow_run.scheduled_start_time.astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M")
        return f"{kind_}-{who}-{when}"

    return name


def _setting(settings: object, name: str) -> object:
    """A setting of the flow's `settings` parameter: the object, or its JSON from the API."""
    if isinstance(settings, Mapping):
        return settings.get(name)
    return getattr(settings, name, None)


def artifact_key(kind: str, state_dir: str | Path, brand: str | None = None) -> str:
    """`<kind>[-<brand>]-<state dir name>-<8 hex of its full path>`, lowercase and dashes."""
    where = Path(state_dir).resolve()
    tag = hashlib.sha256(str(where).encode("utf-8")).hexdigest()[:8]
    parts = [kind, brand or "", where.name, tag]
    return "-".join(p for p in (_NOT_IN_KEY.sub("-", x.lower()).strip("-") for x in parts) if p)


def by_brand_markdown(title: str, rows: Sequence[Mapping[str, object]], keys: Sequence[str]) -> str:
    """One column per brand, one row per figure (like `rollout status`)."""
    header = "| | " + " | ".join(_escape(str(r["brand"])) for r in rows) + " |"
    rule = "|---|" + "---:|" * len(rows)
    lines = [f"### {_escape(title)}", "", header, rule]
    for key in keys:
        cells = (_cell(key, r.get(key, "")) for r in rows)
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(key: str, value: object) -> str:
    if isinstance(value, Mapping):
        if key in _TOTAL_ONLY:  # "550 <reason>" -> counted under 550
            codes: dict[str, int] = {}
            for reason, n in value.items():
                code = str(reason).split(" ", 1)[0]
                codes[code] = codes.get(code, 0) + int(n)
            value = codes
        parts = [f"{_escape(str(k))} {v}" for k, v in sorted(value.items())]
        return "<br>".join(parts) or "0"
    return _escape(str(value))


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
