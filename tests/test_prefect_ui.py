"""What an operator sees in the Prefect UI: runs named after what ran, the core's warnings in
the run's logs, status as a markdown table (metrics as rows, brands as columns, counts only),
and artifact keys per state dir so histories do not mix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SAMPLES

from flows.artifacts import artifact_key, by_brand_markdown
from smtp_server import serve

ROLLOUT = [sys.executable, "-m", "flows.cli"]
KEY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_artifact_keys_are_per_state_dir_and_valid_for_prefect(tmp_path: Path) -> None:
    prod, rehearsal = tmp_path / "PROD" / "State_Dir", tmp_path / "rehearsal" / "State_Dir"
    keys = {artifact_key("status", d) for d in (prod, rehearsal)}
    assert len(keys) == 2
    assert all(KEY.match(k) and k.startswith("status-state-dir-") for k in keys), keys
    assert artifact_key("forecast", prod, "pennymobil").startswith("forecast-pennymobil-state-dir-")
    assert artifact_key("status", prod) == artifact_key("status", str(prod))


def test_the_markdown_table_has_metrics_as_rows_and_counts_only() -> None:
    rows = [
        {"brand": "congstar", "sent": 5, "failed": {"550 mailbox <x> unknown": 2, "554 no": 1}},
        {"brand": "jamobil", "sent": 7, "failed": {}},
    ]
    text = by_brand_markdown("Legi-PIN rollout", rows, ["sent", "failed"])
    assert "| | congstar | jamobil |" in text
    assert "| sent | 5 | 7 |" in text
    assert "| failed | 550 2<br>554 1 | 0 |" in text  # reply codes, not the server's words
    assert "mailbox" not in text


def test_a_run_is_named_after_what_ran_and_its_warnings_reach_prefect(
    prefect_api: str, tmp_path: Path, child_env: dict[str, str]
) -> None:
    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    state = tmp_path / "state"
    with serve() as gone:
        url = f"{gone.url}?timeout=2"  # nobody listens there any more: sending is blocked
    args = ["run", "--brand", "jamobil", "--exports", str(SAMPLES), "--state-dir", str(state)]
    done = subprocess.run(
        [*ROLLOUT, *args, "--after-deadline", "--transport", url],
        env=child_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 3, done.stderr

    with get_client(sync_client=True) as client:
        runs = [
            r
            for r in client.read_flow_runs(limit=200)
            if r.parameters.get("settings", {}).get("state_dir") == str(state)
        ]
        names = sorted(r.name for r in runs)
        assert len(names) == 3, names  # run, pins and notify
        for kind, name in zip(("notify", "pins", "run"), names, strict=True):
            assert re.fullmatch(rf"{kind}-jamobil-\d{{4}}-\d\d-\d\dT\d\d:\d\d", name), name
        [notify] = [r for r in runs if r.name.startswith("notify-")]
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[notify.id]))
        )
    core = [log for log in logs if log.name == "rollout.delivery"]
    assert any("blocked" in log.message for log in core), [(g.name, g.message) for g in logs]

    artifact = Artifact.get(artifact_key("status", state))
    assert artifact is not None and artifact.type == "markdown"
    text = str(artifact.data)
    assert "| | congstar | jamobil | pennymobil |" in text
    assert re.search(r"\| pending \| \d+ \| \d+ \| \d+ \|", text), text
    assert "@" not in text  # counts only
