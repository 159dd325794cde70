"""Shared test set-up: cheap argon2, a private Prefect home, the real Prefect engine on demand,
a throw-away PostgreSQL server on demand."""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from pg_server import PgServer, find_bindir
from rollout.seal import new_key_pair
from rollout.state import StateStore

BRANDS = ("congstar", "jamobil", "pennymobil")

# Before anything imports Prefect: a private, throw-away Prefect home, offline and quiet.
_PREFECT_HOME = tempfile.mkdtemp(prefix="rollout-tests-prefect-")
os.environ.update(
    {
        "PREFECT_HOME": _PREFECT_HOME,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_TASKS_DISABLE_CACHING": "true",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # Hashing at OWASP cost would make the suite take minutes; the format is the same.
        "ROLLOUT_TEST_ONLY_CHEAP_ARGON2": "1",
    }
)
for _name in list(os.environ):
    if _name.startswith(("ROLLOUT_PIN_", "ROLLOUT_ARGON2_")) or "_PIN_SEAL_KEY" in _name:
        os.environ.pop(_name)
os.environ.pop("ROLLOUT_TRANSPORT", None)

# Every brand gets its own pepper and seal key for the session (as a real run needs them);
# the private keys stay in this process, for tests that open sealed PINs.
TEST_PEPPERS = {b: secrets.token_bytes(32) for b in BRANDS}
TEST_SEAL_KEYS = {b: new_key_pair() for b in BRANDS}  # brand -> (private, public), raw bytes
for _brand in BRANDS:
    _env = _brand.upper()
    os.environ[f"{_env}_PIN_PEPPER"] = TEST_PEPPERS[_brand].hex()
    os.environ[f"{_env}_PIN_PEPPER_ID"] = f"test-{_brand}"
    os.environ[f"{_env}_PIN_SEAL_KEY"] = base64.b64encode(TEST_SEAL_KEYS[_brand][1]).decode()
    os.environ[f"{_env}_PIN_SEAL_KEY_ID"] = f"test-seal-{_brand}"

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
# `python -c NO_PREFECT_PROBE ARGS...` runs `rollout ARGS...`; exit 3 means it imported Prefect.
NO_PREFECT_PROBE = (
    "import sys; from flows.cli import main; rc = main(sys.argv[1:]); "
    "sys.exit(3 if any(m.split('.')[0] == 'prefect' for m in sys.modules) else rc)"
)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One real Prefect API server for the whole session (~10 s to start); its URL for children."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        url = PREFECT_API_URL.value()
        assert url
        yield str(url)


@pytest.fixture
def child_env(prefect_api: str) -> dict[str, str]:
    """Environment for a `rollout` subprocess that talks to the session's Prefect server."""
    return {**os.environ, "PREFECT_API_URL": prefect_api}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the whole session (tools/pg_server.py; ~1 s to start).

    Skipped only if no PostgreSQL binaries are found and ROLLOUT_REQUIRE_POSTGRES is not set;
    with ROLLOUT_REQUIRE_POSTGRES=1 (as in CI) a missing or failing server fails the tests.
    While it runs, PGPASSWORD is set in this process's environment: `rollout` subprocesses
    (child_env copies os.environ) inherit it, and the URLs carry no password.
    """
    required = os.environ.get("ROLLOUT_REQUIRE_POSTGRES", "") not in ("", "0")
    if find_bindir() is None:
        reason = (
            "no PostgreSQL binaries (initdb, pg_ctl, postgres) on PATH or in "
            "/usr/lib/postgresql/*/bin: install Debian's `postgresql` package"
        )
        if required:
            pytest.fail(f"ROLLOUT_REQUIRE_POSTGRES is set, but {reason}", pytrace=False)
        pytest.skip(reason)
    with PgServer() as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            patch.setenv(name, value)
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PgServer) -> str:
    """postgresql://rollout@127.0.0.1:PORT/rollout, shared by the session (password: PGPASSWORD)."""
    return postgres_server.url


@pytest.fixture
def fresh_postgres_db(postgres_server: PgServer) -> Iterator[str]:
    """A new, empty database for this test only (dropped afterwards); its URL."""
    name = f"t_{secrets.token_hex(6)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever starts the Prefect engine or a `rollout` process is slow: `make test-fast`
    leaves those out (`make test` runs everything)."""
    for item in items:
        if {"prefect_api", "child_env"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_env(request: pytest.FixtureRequest, child_env: dict[str, str]) -> dict[str, str]:
    """child_env for `rollout` children, on each backend: the state DB in the state dir
    (SQLite), or ROLLOUT_STATE_URL naming a fresh PostgreSQL database (PGPASSWORD inherited)."""
    if request.param == "sqlite":
        return child_env
    url = str(request.getfixturevalue("fresh_postgres_db"))
    server: PgServer = request.getfixturevalue("postgres_server")
    return {**child_env, **server.env, "ROLLOUT_STATE_URL": url}


def state_of(state_dir: Path, env: Mapping[str, str]) -> StateStore | None:
    """A read-only view of the state a `rollout` child with `env` writes (None: none yet)."""
    return StateStore.existing(state_dir, env.get("ROLLOUT_STATE_URL"))


@pytest.fixture(params=["sqlite", "postgresql"])
def state_backend(request: pytest.FixtureRequest) -> str | None:
    """On each backend: None (the SQLite file in the state dir, the default) or the URL of a
    fresh PostgreSQL database (a test passes it as `url=` / --state-url)."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("fresh_postgres_db"))


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state DB of one test, on each backend: a SQLite file, or a fresh PostgreSQL DB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite3'}"
    return str(request.getfixturevalue("fresh_postgres_db"))
