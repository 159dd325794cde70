"""Prefect's log lines for errors the command reports itself carry no traceback.

The flow engine logs every exception a flow raises with its traceback. For the errors the
command turns into one line and an exit code (bad settings, a blocked relay, a full disk, a
signal), that traceback is noise in the terminal and in the Prefect UI; for anything else (a bug)
it stays.
"""

from __future__ import annotations

import logging

from flows.errors import reported


class _DropReportedTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], reported()):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_reported_errors() -> None:
    """Install the filter on every handler Prefect's logging set-up made (idempotent)."""
    import prefect.main  # noqa: F401 - importing it sets up its handlers

    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, _DropReportedTracebacks) for f in handler.filters):
                handler.addFilter(_DropReportedTracebacks())
