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

from sqlalchemy.exc import DBAPIError

from flows.summary import NothingRunYet
from rollout.brands import BrandError
from rollout.exports import ExportError
from rollout.keys import KeyConfigError
from rollout.lock import LockHeld
from rollout.messages import TemplateProblem
from rollout.notify import DeadlinePassed, SendingBlocked
from rollout.settings import SettingsError
from rollout.shutdown import Interrupted
from rollout.state.versions import NewerSchema
from rollout.transports import TransportConfigError

USER_ERRORS: tuple[type[Exception], ...] = (
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
EXIT_BLOCKED = 3
EXIT_ENVIRONMENT = 4
# Everything `run_reporting_errors` turns into one line and an exit code (flows.logs keeps
# their tracebacks out of Prefect's logs).
REPORTED: tuple[type[BaseException], ...] = (
    *USER_ERRORS,
    SendingBlocked,
    sqlite3.Error,
    DBAPIError,  # the state DB's, as SQLAlchemy passes them on
    OSError,
    KeyboardInterrupt,  # Interrupted included
)


def run_reporting_errors(command: Callable[[], int], state_db: str | None = None) -> int:
    """Run the command; what stops it becomes one line and its exit code. `state_db`: the
    state DB as messages may name it (no password)."""
    try:
        return command()
    except USER_ERRORS as error:
        return _fail(str(error), 2)
    except SendingBlocked as error:
        return _fail(str(error), EXIT_BLOCKED)
    except (sqlite3.Error, DBAPIError) as error:
        return _fail(_db_error(error, state_db), EXIT_ENVIRONMENT)
    except OSError as error:
        return _fail(_os_error(error), EXIT_ENVIRONMENT)
    except Interrupted as stop:
        return _fail(f"{stop}; re-run the same command to continue", 128 + stop.signal)
    except KeyboardInterrupt:
        return _fail("interrupted; re-run the same command to continue", 130)


def _db_error(error: Exception, state_db: str | None) -> str:
    """One line: which DB, what it said (its first line: no SQL, no parameters), its code."""
    cause = error.orig if isinstance(error, DBAPIError) else error
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
