"""Turn the errors a user can fix into one clear line and exit code 2; let bugs show in full."""

from __future__ import annotations

import sys
from collections.abc import Callable

from flows.summary import NothingRunYet
from rollout.brands import BrandError
from rollout.exports import ExportError
from rollout.keys import KeyConfigError
from rollout.messages import TemplateProblem
from rollout.notify import DeadlinePassed
from rollout.state import LockHeld
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
)


def run_reporting_errors(command: Callable[[], int]) -> int:
    try:
        return command()
    except USER_ERRORS as error:
        print(f"rollout: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rollout: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130
