"""Shared test set-up: cheap argon2, a private Prefect home, the real Prefect engine on demand."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        "ROLLOUT_ARGON2_TIME_COST": "1",
        "ROLLOUT_ARGON2_MEMORY_KIB": "64",
        "ROLLOUT_ARGON2_PARALLELISM": "1",
    }
)
for _secret in ("ROLLOUT_PIN_PEPPER", "ROLLOUT_PIN_PEPPER_ID", "ROLLOUT_TRANSPORT"):
    os.environ.pop(_secret, None)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"


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
