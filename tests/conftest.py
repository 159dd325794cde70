"""Shared test set-up: cheap argon2, a private Prefect home, the real Prefect engine on demand."""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.seal import new_key_pair

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever starts the Prefect engine or a `rollout` process is slow: `make test-fast`
    leaves those out (`make test` runs everything)."""
    for item in items:
        if {"prefect_api", "child_env"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
