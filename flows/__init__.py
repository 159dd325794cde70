"""Prefect flows that orchestrate the core in `rollout`, and the `rollout` command that starts them.

Importing this package sets the embedded defaults that keep Prefect offline and quiet; each can
be overridden from the environment (see README.md, "Environment" and "Operations").
"""

import os

_PREFECT_DEFAULTS = {
    # No usage data, no pings to outside hosts (they also caused "database is locked" noise).
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # The temporary API server's first start on a fresh PREFECT_HOME can take ~30 s here.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # PIN tasks must never be cached or persisted: their inputs and outputs stay in memory.
    "PREFECT_TASKS_DISABLE_CACHING": "true",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    # The core logs with `logging` (e.g. rollout.delivery's warnings): into the run's logs.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "rollout",
    # ... and outside a flow run (the core called directly) they stay local, without a warning.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
for _name, _value in _PREFECT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
