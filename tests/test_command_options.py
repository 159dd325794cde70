"""Options an operator uses through the command: --today, --rate, the daily quota, the JSON
report; and an address that only the composer finds unusable."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_notify import FAST_RETRY, prepared_state, reachable

from rollout.brands import campaign_id, load_brand, templates_root
from rollout.model import PinSource
from rollout.notify import notify_brand
from rollout.state import CustomerRecord
from rollout.transports import open_transport
from smtp_server import SmtpTestServer

ROLLOUT = [sys.executable, "-m", "flows.cli"]


def rollout(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ROLLOUT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def quota_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The brands' templates with ja!mobil mailing at most 100 customers a wave."""
    root = tmp_path / "templates"
    shutil.copytree(templates_root(), root)
    toml = root / "jamobil" / "brand.toml"
    text = toml.read_text(encoding="utf-8")
    assert "daily_quota = 0" in text
    toml.write_text(text.replace("daily_quota = 0", "daily_quota = 100"), encoding="utf-8")
    monkeypatch.setenv("ROLLOUT_TEMPLATES", str(root))
    return root


def test_today_rate_quota_and_the_json_report_through_the_command(
    quota_templates: Path, tmp_path: Path, child_env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    people = len(reachable(prepared_state(state), "jamobil"))
    env = {**child_env, "ROLLOUT_TEMPLATES": str(quota_templates)}
    args = ["notify", "--brand", "jamobil", "--state-dir", str(state)]
    with SmtpTestServer() as server:
        # After the mandatory date a send refuses, unless it is a rehearsal "as of" earlier.
        late = rollout(*args, "--transport", server.url, "--today", "2022-05-24", env=env)
        assert late.returncode == 2 and "--after-deadline" in late.stderr
        assert server.sessions == 0
        wave = ["--transport", server.url, "--today", "2022-05-02", "--rate", "200"]
        first = rollout(*args, *wave, env=env)
        accepted = sorted(r.accepted_at for r in server.received)
    assert first.returncode == 0, first.stderr
    assert len(accepted) == 100  # the daily quota, not everyone
    # 200 a second: 100 mails cannot take less than 99/200 s (a lower bound holds under load).
    assert accepted[-1] - accepted[0] >= 99 / 200 - 0.05
    report = json.loads((state / "reports" / "jamobil.json").read_text(encoding="utf-8"))
    assert (report["sent"], report["pending"]) == (100, people - 100)
    assert report["brand"] == "jamobil" and report["mandatory_date"] == "2022-05-23"


def test_an_address_only_the_composer_refuses_makes_that_customer_unreachable(
    tmp_path: Path,
) -> None:
    store = prepared_state(tmp_path)
    people = reachable(store, "jamobil")
    # Intake would refuse this address; a state DB filled some other way could still hold it.
    odd = CustomerRecord("JM-ODD", "$argon2id$x", PinSource.KEPT, "Eve", "Odd", "eve@@x", None)
    store.record_chunk("jamobil", [odd], [])
    with SmtpTestServer() as server:
        summary = asyncio.run(
            notify_brand(load_brand("jamobil"), store, open_transport(server.url), FAST_RETRY)
        )
        received = len(server.received)
    assert summary.unusable_address == 1 and summary.sent == received == len(people)
    record = store.customer("jamobil", "JM-ODD")
    assert record is not None and record.email_problem == "bad_email"
    campaign = campaign_id(load_brand("jamobil"))
    assert "JM-ODD" not in {d.customer_id for d in store.deliveries("jamobil", campaign)}
    assert [c for c, *_ in store.unreachable("jamobil") if c == "JM-ODD"] == ["JM-ODD"]
