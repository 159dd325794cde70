"""The session's throw-away PostgreSQL server (tools/pg_server.py, tests/conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import REPO

from pg_server import PgServer, find_bindir


def test_accepts_the_password_from_the_environment(postgres_url: str) -> None:
    assert "PGPASSWORD" in os.environ
    assert "@127.0.0.1:" in postgres_url and ":" not in postgres_url.split("//")[1].split("@")[0]
    with psycopg.connect(postgres_url) as conn:  # password from PGPASSWORD, not the URL
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row == ("rollout", "rollout")


def test_refuses_a_wrong_password(postgres_url: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres_url, password="not-the-password", connect_timeout=5)


def test_child_processes_inherit_the_password(postgres_url: str) -> None:
    code = "import psycopg, sys; psycopg.connect(sys.argv[1]).execute('SELECT 1')"
    subprocess.run([sys.executable, "-c", code, postgres_url], check=True, timeout=60)


def test_fresh_databases_are_isolated(
    postgres_server: PgServer, fresh_postgres_db: str, postgres_url: str
) -> None:
    other_name = "t_isolation_other"
    other = postgres_server.create_database(other_name)
    try:
        with psycopg.connect(fresh_postgres_db) as conn:
            conn.execute("CREATE TABLE journal (id int)")
            conn.execute("INSERT INTO journal VALUES (1)")
        for url in (other, postgres_url):
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT to_regclass('journal')").fetchone() == (None,)
    finally:
        postgres_server.drop_database(other_name)
    with psycopg.connect(postgres_url) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    assert fresh_postgres_db.rsplit("/", 1)[1] in names and other_name not in names


def test_the_server_does_not_run_as_root(postgres_server: PgServer) -> None:
    # PostgreSQL only starts on a data directory owned by the user it runs as.
    assert postgres_server.directory is not None
    owner = (postgres_server.directory / "data").stat().st_uid
    assert owner != 0
    if os.geteuid() != 0:
        assert owner == os.geteuid()


def test_finds_the_binaries_without_the_venv() -> None:
    """.ci/run asks `python3 tools/pg_server.py --bindir` before the venv exists: stdlib only
    (-S: no site-packages)."""
    done = subprocess.run(
        [sys.executable, "-S", str(REPO / "tools" / "pg_server.py"), "--bindir"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    expected = find_bindir()
    assert done.returncode == (0 if expected else 1), done.stderr
    assert done.stdout.strip() == (str(expected) if expected else "")


def test_a_killed_owner_leaves_no_server_behind(tmp_path: Path) -> None:
    """SIGKILL (or a test run's timeout) skips every `finally`: the watchdog stops the server."""
    if find_bindir() is None:
        pytest.skip("no PostgreSQL binaries")
    owner = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; sys.path.insert(0, sys.argv[1]); from pg_server import PgServer\n"
         "s = PgServer(); s.start(); print(s.directory, s.port, flush=True); time.sleep(600)",
         str(REPO / "tools")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert owner.stdout is not None
    directory, port = owner.stdout.readline().split()
    assert Path(directory, "data", "postmaster.pid").exists()
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 60
    while Path(directory).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(directory).exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(port)), timeout=2):
        pass
