"""Turn what stops a run into one clear line and its exit code; let bugs show in full.

| code | meaning |
|---|---|
| 0 | done |
| 1 | done, but someone is failed or unknown or a sender problem open; bounces unparsed; lock held |
| 2 | bad input or settings, a held lock, no state DB to read: nothing was done (one line) |
| 3 | sending blocked: the relay refused us (connection, TLS, AUTH, sender); the rest is pending |
| 4 | the environment failed: state dir not writable, disk full, state DB unreadable |
| 130, 143 | stopped by SIGINT or SIGTERM after the messages in flight; re-run to continue |
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from collections.abc import Callable
from functools import cache

from rollout.shutdown import Interrupted

EXIT_USER = 2
EXIT_BLOCKED = 3
EXIT_ENVIRONMENT = 4


@cache
def user_errors() -> tuple[type[Exception], ...]:
    """The errors that are the user's to fix (exit 2), each from the module that raises it.

    Imported when an error is being reported, not at start: a command that needs none of these
    modules (`keys`, `status`) does not pay for importing pandas or SQLAlchemy.
    """
    from flows.summary import NothingRunYet
    from rollout.brands import BrandError
    from rollout.exports import ExportError
    from rollout.keys import KeyConfigError
    from rollout.lock import LockHeld
    from rollout.messages import TemplateProblem
    from rollout.notify import DeadlinePassed
    from rollout.settings import SettingsError
    from rollout.state.versions import NewerSchema
    from rollout.transports import TransportConfigError

    return (
        BrandError,
        ExportError,
        TemplateProblem,
        DeadlinePassed,
        LockHeld,
        TransportConfigError,
        NothingRunYet,
        KeyConfigError,
        SettingsError,
        NewerSchema,
    )


def _db_errors() -> tuple[type[Exception], ...]:
    """The state DB's errors: sqlite3's, SQLAlchemy's and psycopg's (the journal's own
    connection on PostgreSQL), each once it has been imported (before that, none of its
    errors can have been raised)."""
    sqlalchemy_errors, psycopg = sys.modules.get("sqlalchemy.exc"), sys.modules.get("psycopg")
    return (
        sqlite3.Error,
        *([sqlalchemy_errors.DBAPIError] if sqlalchemy_errors else []),
        *([psycopg.Error] if psycopg else []),
    )


def reported() -> tuple[type[BaseException], ...]:
    """Everything `run_reporting_errors` turns into one line and an exit code (flows.logs keeps
    their tracebacks out of Prefect's logs)."""
    from rollout.notify import SendingBlocked

    return (*user_errors(), SendingBlocked, *_db_errors(), OSError, KeyboardInterrupt)


def run_reporting_errors(command: Callable[[], int], state_db: str | None = None) -> int:
    """Run the command; what stops it becomes one line and its exit code. `state_db`: the
    state DB as messages may name it (no password)."""
    try:
        return command()
    except Interrupted as stop:
        return _fail(f"{stop}; re-run the same command to continue", 128 + stop.signal)
    except KeyboardInterrupt:
        return _fail("interrupted; re-run the same command to continue", 130)
    except Exception as error:
        said = _one_line(error, state_db)
        if said is None:
            raise  # a bug: its traceback in full
        return _fail(*said)


def _one_line(error: Exception, state_db: str | None) -> tuple[str, int] | None:
    from rollout.notify import SendingBlocked

    if isinstance(error, user_errors()):
        return str(error), EXIT_USER
    if isinstance(error, SendingBlocked):
        return str(error), EXIT_BLOCKED
    if isinstance(error, _db_errors()):
        return _db_error(error, state_db), EXIT_ENVIRONMENT
    if isinstance(error, OSError):
        return _os_error(error), EXIT_ENVIRONMENT
    return None


def _db_error(error: Exception, state_db: str | None) -> str:
    """One line: which DB, what it said (its first line: no SQL, no parameters), its code."""
    cause = getattr(error, "orig", None) or error  # SQLAlchemy's wrapper: the driver's error
    name = getattr(cause, "sqlite_errorname", None) or getattr(cause, "sqlstate", None)
    where = f"state DB {state_db}" if state_db else "state DB"
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"{where}: {text} ({name or type(cause).__name__})"


def _os_error(error: OSError) -> str:
    code = errno.errorcode.get(error.errno or 0, "")
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error} ({code})" if code else f"{where}{error}"


def _fail(message: str, code: int) -> int:
    print(f"rollout: error: {message}", file=sys.stderr)
    return code
