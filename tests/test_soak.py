"""Soak: a faulty relay, random SIGKILLs and SIGTERMs, re-runs until done. Nobody mailed twice.

The relay answers 451 and 421 at every stage, drops connections before and after the final dot,
loses final replies and answers slower than the client waits. The `rollout notify` processes
are killed at random moments (seeded, so a failure can be replayed) and started again until one
finishes by itself. Then an operator decides to mail the unknown ones again.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO

from rollout.brands import campaign_id, load_brand
from rollout.state import StateStore
from smtp_server import (
    SmtpTestServer,
    disconnect,
    drop,
    lost_reply,
    reject,
    slow_reply,
    tempfail,
)

ROLLOUT = [sys.executable, "-m", "flows.cli"]
CUSTOMERS = 1500
SEED = 20220523
JAMOBIL = campaign_id(load_brand("jamobil"))


def export(folder: Path) -> Path:
    folder.mkdir()
    lines = ["customer_id,first_name,last_name,email,birth_date,legi_pin_hash"]
    lines += [
        f"S{n:05d},Kim,Soak {n},kim.soak{n}@example.org,1980-0{1 + n % 9}-1{n % 9},"
        for n in range(CUSTOMERS)
    ]
    (folder / "jamobil.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def faults() -> list[object]:
    refused = [f"kim.soak{n}@example.org" for n in range(0, CUSTOMERS, 250)]
    return [
        reject(refused, reply="550 5.1.1 <x>: Recipient address rejected: User unknown"),
        tempfail(at="MAIL", every=37, reply="451 4.3.0 Try again later"),
        tempfail(at="RCPT", every=29),
        tempfail(at="DATA", every=31, reply="451 4.3.0 Queue full, try again"),
        disconnect(at="MAIL", every=71),
        disconnect(at="RCPT", every=67),
        disconnect(at="DATA", every=53),
        drop(at="RCPT", every=41),  # before DATA: certainly not sent
        drop(at="DATA", every=43),  # after the final dot, not kept: unknown all the same
        lost_reply(every=47),  # kept, no reply
        slow_reply(2.5, every=59),  # kept, the reply comes after the client gave up
    ]


def _sending(
    command: list[str], env: dict[str, str], log: Path, server: SmtpTestServer
) -> subprocess.Popen[bytes]:
    """Start a `rollout notify` and return once the relay has taken a mail since (or it ended):
    the random kill then falls while it sends, however long its start took on a loaded box."""
    taken = len(server.received)
    with log.open("w") as err:
        child = subprocess.Popen(command, env=env, cwd=REPO, stderr=err)
    while child.poll() is None and len(server.received) == taken:
        time.sleep(0.1)
    return child


@pytest.mark.slow
def test_faults_kills_and_reruns_never_mail_anyone_twice(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    """On SQLite one `notify` runs at a time; on PostgreSQL two share the brand, each killed
    at its own random moment."""
    child_env = backend_env
    runners = 2 if "ROLLOUT_STATE_URL" in child_env else 1
    rng = random.Random(SEED)
    state = tmp_path / "state"
    pins = subprocess.run(
        [*ROLLOUT, "pins", "--brand", "jamobil", "--exports", str(export(tmp_path / "exports")),
         "--state-dir", str(state)],
        env=child_env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pins.returncode == 0, pins.stderr
    with SmtpTestServer(faults=faults(), record=True) as server:  # type: ignore[arg-type]
        url = f"{server.url}?timeout=1"
        notify = [*ROLLOUT, "notify", "--brand", "jamobil", "--state-dir", str(state),
                  "--after-deadline", "--transport", url,
                  "--connections", "4", "--rate", "150"]  # fmt: skip
        endings: list[int] = []
        for attempt in range(15):
            children = [
                _sending(notify, child_env, tmp_path / f"notify-{attempt}-{n}.log", server)
                for n in range(runners)
            ]
            for child in children:
                try:
                    child.wait(timeout=rng.uniform(0.5, 6.0))
                except subprocess.TimeoutExpired:
                    child.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
                    child.wait(timeout=120)
            codes = [child.returncode for child in children]
            endings += codes
            # -SIGTERM: the signal came before the command had even started (nothing done yet)
            expected = (0, 1, -signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM)
            logs = [(tmp_path / f"notify-{attempt}-{n}.log").read_text() for n in range(runners)]
            assert all(code in expected for code in codes), logs
            if all(code in (0, 1) for code in codes):
                break
        else:
            pytest.fail(f"no attempt finished by itself: {endings}")
        killed = sum(code not in (0, 1) for code in endings)
        with StateStore.in_dir(state, url=child_env.get("ROLLOUT_STATE_URL")) as store:
            in_doubt = {d.message_id for d in store.deliveries("jamobil", JAMOBIL, ["unknown"])}
        before_resend = Counter(r.message_id for r in server.received)

        # The operator decides: mail the unknown ones again (the relay behaves now).
        server.set_faults()
        resend = subprocess.run(
            [*ROLLOUT, "resend", "--brand", "jamobil", "--state-dir", str(state),
             "--after-deadline", "--transport", url, "--include-unknown"],
            env=child_env, cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        received = list(server.received)
    status = subprocess.run(
        [*ROLLOUT, "status", "--brand", "jamobil", "--state-dir", str(state), "--json"],
        env=child_env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    # Kills happened, and uncertain outcomes occurred: the test exercised what it claims.
    assert killed >= 1 and in_doubt, (endings, len(in_doubt))
    # 1. Before anyone asked, no Message-ID was accepted twice.
    assert max(before_resend.values()) == 1, before_resend.most_common(3)
    # 2. After `resend --include-unknown`, only the unknown ones can have a second copy.
    twice = {mid for mid, n in Counter(r.message_id for r in received).items() if n > 1}
    assert twice <= in_doubt
    # 3. Everyone ends sent, or failed with the server's words; nobody is left pending.
    with StateStore.in_dir(state, url=child_env.get("ROLLOUT_STATE_URL")) as store:
        deliveries = store.deliveries("jamobil", JAMOBIL)
        assert store.pending_count("jamobil", JAMOBIL) == 0
    outcome = Counter(d.status for d in deliveries)
    assert set(outcome) <= {"sent", "failed"} and outcome["failed"] == 6, outcome
    assert all(
        d.code == 550 and "User unknown" in d.reason for d in deliveries if d.status == "failed"
    )
    # 4. The record matches the server: every 'sent' was accepted, everything accepted is 'sent'.
    accepted = {r.message_id for r in received}
    assert {d.message_id for d in deliveries if d.status == "sent"} == accepted
    assert resend.returncode == 1, resend.stderr  # the six refused remain failed: exit 1
    [row] = json.loads(status.stdout)
    assert row["sent"] == outcome["sent"] and row["unknown"] == 0, row
    assert status.returncode == 1  # failed customers remain: status says so
