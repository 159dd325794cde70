"""How a run stops: a blocked relay, a broken environment, a signal. Each with its own exit code,
a Prefect run that does not look finished, and a state DB that tells the truth."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import REPO, SAMPLES
from test_journal import refuse_the_20th_outcome
from test_notify import prepared_state, reachable

from rollout.brands import campaign_id, load_brand
from rollout.lock import holder_of
from rollout.notify import SendingBlocked
from rollout.state import StateStore
from smtp_server import SmtpTestServer, self_signed, serve

ROLLOUT = [sys.executable, "-m", "flows.cli"]
CREDS = {"ROLLOUT_SMTP_USER": "mailer", "ROLLOUT_SMTP_PASSWORD": "s3cret-Pa55"}
JAMOBIL = campaign_id(load_brand("jamobil"))


def rollout(
    *args: str, env: dict[str, str], prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *ROLLOUT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    return self_signed(tmp_path_factory.mktemp("tls"))


# --- a blocked relay --------------------------------------------------------------------------


@pytest.fixture
def relay(request: pytest.FixtureRequest, tls: tuple[Path, ssl.SSLContext]) -> Iterator[str]:
    """A transport URL that can carry no message at all, for each reason a relay blocks us."""
    cause = request.param
    if cause == "connection refused":
        with serve() as gone:
            url = f"{gone.url}?timeout=2&insecure_auth=loopback"
        yield url
        return
    kwargs: dict[str, object] = {
        "TLS verification": {"starttls": tls[1]},
        "wrong password (535)": {"credentials": ("mailer", "another")},
        "no AUTH offered": {},
        "no STARTTLS offered": {},
    }[cause]
    with SmtpTestServer(**kwargs) as server:  # type: ignore[arg-type]
        if cause in ("TLS verification", "no STARTTLS offered"):
            yield f"smtp+starttls://127.0.0.1:{server.port}"
        else:
            yield f"{server.url}?insecure_auth=loopback"
        assert server.received == []


BLOCKS = {
    "connection refused": "no connection could be opened",
    "TLS verification": "CERTIFICATE_VERIFY_FAILED",
    "wrong password (535)": "535",
    "no AUTH offered": "server offers no AUTH",
    "no STARTTLS offered": "does not offer STARTTLS",
}


@pytest.mark.parametrize("relay", list(BLOCKS), indirect=True)
def test_a_blocked_relay_fails_the_flow_run_and_leaves_everyone_pending(
    relay: str,
    request: pytest.FixtureRequest,
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client

    from flows.notify import notify_for_brand
    from rollout.settings import Settings

    cause = request.node.callspec.params["relay"]
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    store = prepared_state(tmp_path)
    people = len(reachable(store, "jamobil"))
    given = Settings(state_dir=tmp_path, transport=relay, after_deadline=True)
    state = notify_for_brand("jamobil", given, return_state=True)
    assert state.is_failed()
    assert BLOCKS[cause] in (state.message or "")
    with pytest.raises(SendingBlocked, match=BLOCKS[cause]):
        state.result()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(state.state_details.flow_run_id)))
    assert run.state is not None and run.state.is_failed()
    assert store.deliveries("jamobil", JAMOBIL) == []  # nobody failed for the relay's problem
    assert store.pending_count("jamobil", JAMOBIL) == people


def test_a_blocked_relay_exits_3_in_one_line(tmp_path: Path, child_env: dict[str, str]) -> None:
    prepared_state(tmp_path).close()
    with serve() as gone:
        url = f"{gone.url}?timeout=2"
    args = ["notify", "--brand", "jamobil", "--state-dir", str(tmp_path), "--after-deadline"]
    done = rollout(*args, "--transport", url, env=child_env)
    assert done.returncode == 3, done.stderr
    assert last_line(done.stderr).startswith("rollout: error: jamobil: sending stopped after 0")


# --- a broken environment ---------------------------------------------------------------------


def _can_mount() -> bool:
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True
    )
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not _can_mount(), reason="private mounts (unshare --mount, as root) are not permitted here"
)


def read_only(path: Path) -> tuple[str, ...]:
    """Run a command with `path` mounted read-only (a private mount: nothing else sees it)."""
    p = str(path)
    script = f'mount --bind "{p}" "{p}" && mount -o remount,ro,bind "{p}" && exec "$@"'
    return ("unshare", "--mount", "sh", "-c", script, "sh")


def tiny_disk(path: Path, size: str) -> tuple[str, ...]:
    script = f'mount -t tmpfs -o size={size} none "{path}" && exec "$@"'
    return ("unshare", "--mount", "sh", "-c", script, "sh")


@needs_mounts
def test_a_read_only_state_dir_is_one_line_and_exit_4_and_status_still_works(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    prepared_state(tmp_path).close()
    args = ["notify", "--brand", "jamobil", "--state-dir", str(tmp_path), "--after-deadline"]
    done = rollout(*args, env=child_env, prefix=read_only(tmp_path))
    assert done.returncode == 4, done.stderr
    line = last_line(done.stderr)
    assert line.startswith(f"rollout: error: {tmp_path}") and "EROFS" in line, line
    assert "Traceback" not in done.stderr
    status = rollout(
        "status", "--state-dir", str(tmp_path), env=child_env, prefix=read_only(tmp_path)
    )
    assert status.returncode == 0, status.stderr
    assert "jamobil" in status.stdout


@needs_mounts
def test_a_full_disk_is_one_line_and_exit_4(tmp_path: Path, child_env: dict[str, str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    args = ["pins", "--brand", "congstar", "--exports", str(SAMPLES), "--state-dir", str(state)]
    done = rollout(*args, env=child_env, prefix=tiny_disk(state, "96k"))
    assert done.returncode == 4, done.stderr
    line = last_line(done.stderr)
    assert line.startswith("rollout: error: ") and str(state) in line, line  # names the file
    assert "SQLITE_FULL" in line or "ENOSPC" in line, line
    assert "Traceback" not in done.stderr


def test_a_state_db_that_refuses_an_outcome_is_one_line_and_exit_4(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    """The journal's own connection failing mid-send (on PostgreSQL psycopg's, not
    SQLAlchemy's) stops notify with one line naming the state DB; nothing is mailed twice."""
    url = backend_env.get("ROLLOUT_STATE_URL")
    with prepared_state(tmp_path, url=url) as store:
        state = store.url
    refuse_the_20th_outcome(state)
    with SmtpTestServer() as server:
        args = ["notify", "--brand", "jamobil", "--state-dir", str(tmp_path), "--after-deadline"]
        done = rollout(*args, "--transport", server.url, env=backend_env)
        accepted = server.accepted
    assert done.returncode == 4, done.stderr
    line = last_line(done.stderr)
    assert line.startswith("rollout: error: state DB ") and "disk is full (test)" in line, line
    assert "Traceback" not in done.stderr
    statuses = _statuses(tmp_path, backend_env)
    assert set(statuses) <= {"sent", "sending"} and statuses.total() >= accepted, statuses


# --- signals ----------------------------------------------------------------------------------


def _start_notify(
    state: Path, server: SmtpTestServer, env: dict[str, str]
) -> subprocess.Popen[str]:
    args = ["notify", "--brand", "jamobil", "--state-dir", str(state), "--after-deadline"]
    return subprocess.Popen(
        [*ROLLOUT, *args, "--transport", server.url, "--connections", "4"],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition: object, child: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while not condition():  # type: ignore[operator]
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _statuses(state: Path, env: dict[str, str] | None = None) -> Counter[str]:
    with StateStore.in_dir(state, url=(env or {}).get("ROLLOUT_STATE_URL")) as s:
        return Counter(d.status for d in s.deliveries("jamobil", JAMOBIL))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_transactions_in_flight_finish_and_records_them(
    signum: signal.Signals, tmp_path: Path, backend_env: dict[str, str]
) -> None:
    child_env, url = backend_env, backend_env.get("ROLLOUT_STATE_URL")
    state = tmp_path / "state"
    prepared_state(state, url=url).close()
    with SmtpTestServer(delay=0.3) as server:
        child = _start_notify(state, server, child_env)
        _wait_for(lambda: server.accepted >= 12, child)
        child.send_signal(signum)  # SIGINT: what Ctrl-C sends
        _, stderr = child.communicate(timeout=300)
        accepted = server.accepted
    assert child.returncode == 128 + signum, stderr  # 143 or 130
    assert last_line(stderr).startswith(f"rollout: error: stopped by {signum.name}")
    statuses = _statuses(state, child_env)
    # Every message the server took is recorded sent; none is left in doubt, none claimed.
    assert statuses == Counter({"sent": accepted}), statuses
    assert holder_of(state, "jamobil", url) is None  # released


def test_a_second_sigterm_stops_at_once(tmp_path: Path, child_env: dict[str, str]) -> None:
    state = tmp_path / "state"
    prepared_state(state).close()
    with SmtpTestServer(delay=60) as server:  # nothing would finish in time
        child = _start_notify(state, server, child_env)
        _wait_for(lambda: server.sessions >= 4, child)
        time.sleep(0.5)  # the four connections carry a message each
        child.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=50)  # well before the server would answer
    assert child.returncode == 128 + signal.SIGTERM, stderr
    statuses = _statuses(state)
    assert statuses["sent"] == 0 and sum(statuses.values()) <= 4  # left in doubt, not sent


@pytest.mark.slow  # starts a temporary Prefect server of its own
def test_sigterm_stops_the_temporary_prefect_server(tmp_path: Path) -> None:
    """Without PREFECT_API_URL a run starts its own server: a signal must not orphan it."""
    state = tmp_path / "state"
    prepared_state(state).close()
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)
    with SmtpTestServer(delay=0.3) as server:
        child = _start_notify(state, server, env)
        _wait_for(lambda: server.accepted >= 4, child)
        assert _processes_with(str(home)), "the temporary server should be running now"
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGTERM
    deadline = time.monotonic() + 60
    while _processes_with(str(home)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_with(str(home)) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_serve_cleanly(
    signum: signal.Signals, tmp_path: Path, child_env: dict[str, str]
) -> None:
    """`rollout serve` against a real server: Ctrl-C (SIGINT) or a SIGTERM (what a container
    stop sends) pauses the schedules and exits 130 or 143 in one line, without a traceback."""
    from prefect.client.orchestration import get_client

    state = (tmp_path / "state").resolve()
    args = ["serve", "--exports", str(SAMPLES), "--state-dir", str(state)]
    started = datetime.now(UTC)
    child = subprocess.Popen(
        [*ROLLOUT, *args],
        env=child_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def ours() -> list[Any]:
        with get_client(sync_client=True) as client:
            made = client.read_deployments()
        return [d for d in made if d.parameters.get("settings", {}).get("state_dir") == str(state)]

    try:
        # three waves, preview and resend, each polled by this runner: serving (the names are
        # the session's, so an earlier serve may have left them READY)
        _wait_for(lambda: [polled_since(d, started) for d in ours()] == [True] * 5, child)
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=120)  # a safety net, not a timing claim
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr, stderr
    assert last_line(stderr) == (
        f"rollout: error: stopped by {signum.name}; re-run the same command to continue"
    )
    assert all(d.paused for d in ours())  # Prefect paused the schedules


def polled_since(deployment: Any, since: datetime) -> bool:
    return deployment.last_polled is not None and deployment.last_polled > since


def _processes_with(needle: str) -> list[int]:
    """Processes whose environment holds `needle` (the run's own PREFECT_HOME)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# --- refusals before anything is done ----------------------------------------------------------


def test_credentials_for_a_plaintext_relay_are_refused_before_anything_is_done(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    with SmtpTestServer(credentials=("mailer", "s3cret-Pa55")) as server:
        args = ["run", "--exports", str(SAMPLES), "--state-dir", str(state), "--after-deadline"]
        done = rollout(*args, "--transport", server.url, env={**child_env, **CREDS})
        assert server.sessions == 0  # not even a connection
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"rollout: error: ROLLOUT_SMTP_USER is set but {server.url} is plaintext: credentials go "
        "only over TLS (use smtp+starttls:// or smtps://; for a relay on this machine add "
        "?insecure_auth=loopback)"
    )
    assert not state.exists()  # no PIN drawn, no state DB, no write-back


def test_a_run_past_the_deadline_refuses_before_drawing_a_pin(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    done = rollout("run", "--exports", str(SAMPLES), "--state-dir", str(state), env=child_env)
    assert done.returncode == 2
    assert "--after-deadline" in last_line(done.stderr)
    assert not state.exists()
