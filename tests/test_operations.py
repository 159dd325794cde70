"""Operating the rollout: locks, missed schedules, deployments, the unreachable list, bad input."""

from __future__ import annotations

import csv
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES
from test_lock import NEW_PID_NAMESPACE, _pid_namespaces_work, holder

from rollout.settings import Settings

PID_NAMESPACES = _pid_namespaces_work()

ROLLOUT = [sys.executable, "-m", "flows.cli"]


def rollout_cmd(
    *args: str, env: dict[str, str], prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *ROLLOUT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_the_lock_keeps_a_second_run_out_until_its_holder_is_gone(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    pins = rollout_cmd(
        "pins",
        "--brand",
        "jamobil",
        "--exports",
        str(SAMPLES),
        "--state-dir",
        str(state),
        env=child_env,
    )
    assert pins.returncode == 0, pins.stderr
    args = ["notify", "--brand", "jamobil", "--state-dir", str(state), "--after-deadline"]
    # The holder runs in a PID namespace of its own, the second run in another (as two
    # containers sharing the state volume would): it must still be kept out.
    prefix = NEW_PID_NAMESPACE if PID_NAMESPACES else []
    with holder(state, prefix, brand="jamobil") as child:
        second = rollout_cmd(*args, env=child_env, prefix=prefix)
        assert second.returncode == 2, second.stderr
        assert (
            second.stderr.strip()
            .splitlines()[-1]
            .startswith("rollout: error: brand jamobil is locked by notify (pid ")
        )
        assert not (state / "outbox").exists()  # it sent nothing
        unlock = rollout_cmd(
            "unlock", "--brand", "jamobil", "--state-dir", str(state), env=child_env
        )
        assert unlock.returncode == 1 and "locked by notify" in unlock.stderr
        child.kill()
    recovered = rollout_cmd(*args, env=child_env)  # the holder died: the OS freed its lock
    assert recovered.returncode == 0, recovered.stderr
    assert len(list((state / "outbox" / "new").iterdir())) > 300


def test_a_broken_export_is_one_clear_line_and_exit_2(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "congstar.csv").write_text(
        "Kundennummer;Vorname;Nachname\n1;Max;Muster\n", encoding="utf-8"
    )
    done = rollout_cmd(
        "pins",
        "--brand",
        "congstar",
        "--exports",
        str(exports),
        "--state-dir",
        str(tmp_path),
        env=child_env,
    )
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("rollout: error: ") and "congstar.csv" in error and "E-Mail" in error


def test_unreachable_customers_are_listed_for_another_channel(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    assert (
        rollout_cmd(
            "pins",
            "--brand",
            "pennymobil",
            "--exports",
            str(SAMPLES),
            "--state-dir",
            str(state),
            env=child_env,
        ).returncode
        == 0
    )
    out = tmp_path / "letters.csv"
    done = rollout_cmd(
        "unreachable",
        "--brand",
        "pennymobil",
        "--state-dir",
        str(state),
        "--out",
        str(out),
        env=child_env,
    )
    assert done.returncode == 0, done.stderr
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    with sqlite3.connect(state / "state.sqlite3") as db:
        expected = dict(
            db.execute(
                "SELECT customer_id, email_problem FROM customers WHERE email_problem IS NOT NULL"
            )
        )
    assert {r["customer_id"]: r["reason"] for r in rows} == expected and expected


# --- schedules --------------------------------------------------------------------------


def test_a_wave_that_missed_its_slot_is_skipped_not_sent(prefect_api: str, tmp_path: Path) -> None:
    """After the scheduler was down, a stale run does nothing; a punctual one sends."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    from flows.serve import scheduled_wave

    state = tmp_path / "state"
    given = {"exports": str(SAMPLES), "state_dir": str(state)}
    params: dict[str, object] = {"brand": "jamobil", "settings": given}

    def run_scheduled_at(when: datetime) -> object:
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run(
                scheduled_wave, parameters=params, state=Scheduled(scheduled_time=when)
            )
        return run_flow(scheduled_wave, flow_run=flow_run, parameters=params)

    stale = run_scheduled_at(datetime.now(UTC) - timedelta(hours=5))
    assert stale["skipped"] is True  # type: ignore[index]
    assert not state.exists()

    params["settings"] = given | {"after_deadline": True}  # the dates are past: a rehearsal
    punctual = run_scheduled_at(datetime.now(UTC) - timedelta(minutes=1))
    assert punctual["jamobil"]["notify"]["sent"] > 300  # type: ignore[index]


def test_deployments_schedule_each_brand_in_berlin_time(tmp_path: Path) -> None:
    from flows.serve import deployments

    made = deployments(Settings(exports=SAMPLES, state_dir=tmp_path))
    names = sorted(d.name for d in made)  # type: ignore[attr-defined]
    assert names == ["preview", "resend", "wave-congstar", "wave-jamobil", "wave-pennymobil"]
    for d in made:
        for s in d.schedules or []:  # type: ignore[attr-defined]
            assert s.schedule.timezone == "Europe/Berlin"
    waves = [d for d in made if d.name.startswith("wave-")]  # type: ignore[attr-defined]
    assert all(d.schedules for d in waves)  # type: ignore[attr-defined]
    given = [d.parameters["settings"] for d in made]  # type: ignore[attr-defined]
    assert all(
        Path(s["state_dir"]).is_absolute() and Path(s["exports"]).is_absolute() for s in given
    )


def test_serve_offers_the_deployments_for_ad_hoc_runs(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    """`rollout serve` against a real Prefect server; a preview run started from the API."""
    state = tmp_path / "state"
    server = subprocess.Popen(
        [*ROLLOUT, "serve", "--state-dir", str(state), "--exports", str(SAMPLES)],
        env=child_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        done = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "deployment",
                    "run",
                    "legi-pin-preview/preview",
                    "--param",
                    f"out_dir={tmp_path / 'preview'}",
                    "--watch",
                    "--watch-timeout",
                    "120",
                ],
                env=child_env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode == 0:
                break
            time.sleep(2)
        assert done is not None and done.returncode == 0, done.stdout + done.stderr if done else ""
    finally:
        server.send_signal(signal.SIGINT)  # what Ctrl-C does: pause the schedules and stop
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    for brand in ("congstar", "jamobil", "pennymobil"):
        assert (tmp_path / "preview" / brand / "index.html").is_file()
    assert not (state / "state.sqlite3").exists()  # a preview changes no state


@pytest.mark.parametrize("late, stale", [(timedelta(minutes=5), False), (timedelta(hours=3), True)])
def test_lateness_rule(late: timedelta, stale: bool) -> None:
    from flows.serve import is_stale

    now = datetime(2022, 5, 10, 8, 0, tzinfo=UTC)
    assert is_stale(now - late, now, timedelta(minutes=120)) is stale


def test_status_before_any_run_says_so_and_creates_nothing(tmp_path: Path) -> None:
    from flows.cli import main

    assert main(["status", "--state-dir", str(tmp_path / "state")]) == 2
    assert not (tmp_path / "state").exists()
