"""The brand lock: held by the OS for the holder's life, whatever its PID namespace."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from conftest import REPO

from rollout.lock import LockHeld, brand_lock, holder_of, lock_path

HOLD = """
import sys, time
from pathlib import Path
from rollout.lock import brand_lock
with brand_lock(Path(sys.argv[1]), sys.argv[2], "notify"):
    print("held", flush=True)
    time.sleep(300)
"""


def _pid_namespaces_work() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    return subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True).returncode == 0


NEW_PID_NAMESPACE = ["unshare", "--pid", "--fork", "--kill-child"]
needs_pid_namespaces = pytest.mark.skipif(
    not _pid_namespaces_work(), reason="unshare --pid is not permitted here (needs root)"
)


@contextmanager
def holder(
    state_dir: Path, prefix: Sequence[str] = (), brand: str = "congstar"
) -> Iterator[subprocess.Popen[str]]:
    """Another process (as a `notify` would) that holds `brand`'s lock until it is killed."""
    with holding([*prefix, sys.executable, "-c", HOLD, str(state_dir), brand]) as child:
        yield child


@contextmanager
def holding(command: Sequence[str]) -> Iterator[subprocess.Popen[str]]:
    """Run `command`, which says "held" once it holds a lock; kill it at the end."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        yield child
    finally:
        child.kill()
        child.wait()


def test_a_live_holder_keeps_others_out_and_its_death_frees_the_lock(tmp_path: Path) -> None:
    with holder(tmp_path) as child:
        expected = rf"locked by notify \(pid {child.pid} on "
        with pytest.raises(LockHeld, match=expected), brand_lock(tmp_path, "congstar", "pins"):
            pass
        assert f"pid {child.pid}" in (holder_of(tmp_path, "congstar") or "")
        child.send_signal(signal.SIGKILL)  # no clean-up at all: the kernel frees the lock
        child.wait()
    assert holder_of(tmp_path, "congstar") is None
    with brand_lock(tmp_path, "congstar", "pins"):
        assert "locked by pins" in (holder_of(tmp_path, "congstar") or "")
    assert holder_of(tmp_path, "congstar") is None


def test_brands_lock_separately(tmp_path: Path) -> None:
    with brand_lock(tmp_path, "congstar", "notify"), brand_lock(tmp_path, "jamobil", "notify"):
        assert holder_of(tmp_path, "pennymobil") is None


def test_asking_who_holds_it_creates_nothing(tmp_path: Path) -> None:
    assert holder_of(tmp_path / "typo", "congstar") is None
    assert not (tmp_path / "typo").exists()
    assert not lock_path(tmp_path, "congstar").exists()


@needs_pid_namespaces
def test_runs_in_different_pid_namespaces_exclude_each_other(tmp_path: Path) -> None:
    # Both processes are PID 1 in their own namespace on the same host: judging the holder by
    # (host, pid) would take the live lock over. The kernel's lock is not fooled.
    with holder(tmp_path, NEW_PID_NAMESPACE):
        second = subprocess.run(
            [*NEW_PID_NAMESPACE, sys.executable, "-c", HOLD, str(tmp_path), "congstar"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert second.returncode != 0 and "held" not in second.stdout
        assert "LockHeld: brand congstar is locked by notify (pid 1 on " in second.stderr


HOLD_ON_POSTGRESQL = """
import sys, time
from pathlib import Path
from rollout.lock import brand_lock
with brand_lock(Path("."), sys.argv[2], "notify", url=sys.argv[1], shared=sys.argv[3] == "shared"):
    print("held", flush=True)
    time.sleep(300)
"""


def holder_on_postgresql(url: str, mode: str) -> AbstractContextManager[subprocess.Popen[str]]:
    """Another process holding congstar's lock in a PostgreSQL DB until it is killed."""
    return holding([sys.executable, "-c", HOLD_ON_POSTGRESQL, url, "congstar", mode])


def test_on_postgresql_a_killed_holder_leaves_no_stale_lock(
    tmp_path: Path, fresh_postgres_db: str
) -> None:
    url = fresh_postgres_db
    with holder_on_postgresql(url, "exclusive") as child:
        with (
            pytest.raises(LockHeld, match=rf"locked by rollout notify congstar pid {child.pid} "),
            brand_lock(tmp_path, "congstar", "pins", url=url),
        ):
            pass
        assert f"pid {child.pid}" in (holder_of(tmp_path, "congstar", url) or "")
        child.send_signal(signal.SIGKILL)  # its connection dies, and the lock with it
        child.wait()
    with brand_lock(tmp_path, "congstar", "pins", url=url):
        assert "rollout pins congstar" in (holder_of(tmp_path, "congstar", url) or "")
    assert holder_of(tmp_path, "congstar", url) is None
    assert not (tmp_path / "locks").exists()  # nothing on the local disk


def test_on_postgresql_senders_share_the_lock_and_pins_wait_for_them(
    tmp_path: Path, fresh_postgres_db: str
) -> None:
    url = fresh_postgres_db
    with holder_on_postgresql(url, "shared"):
        with brand_lock(tmp_path, "congstar", "notify", url=url, shared=True):
            assert (holder_of(tmp_path, "congstar", url) or "").count("(shared") == 2
        with (
            pytest.raises(LockHeld, match="locked by rollout notify"),
            brand_lock(tmp_path, "congstar", "pins", url=url),
        ):
            pass
        with brand_lock(tmp_path, "jamobil", "pins", url=url):  # brands lock separately
            pass
