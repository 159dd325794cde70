"""Progress of a sending run: a live bar on a terminal and a Prefect progress artifact."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from rollout.delivery import Outcome
from rollout.model import DeliveryStatus


class SendProgress:
    """Counts outcomes; redraws the bar at once and the artifact at most every few seconds."""

    ARTIFACT_EVERY_S = 5.0

    def __init__(self, brand: str, total: int) -> None:
        self.brand, self.total = brand, max(total, 0)
        self.sent = self.failed = 0
        self.started = time.monotonic()
        self._artifact_at = 0.0
        self._artifact: UUID = create_progress_artifact(  # type: ignore[assignment]
            0.0, key=f"sending-{brand}", description=f"Sending the Legi-PIN e-mail: {brand}"
        )
        self._bar: Progress | None = None
        if sys.stderr.isatty():
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sent {task.fields[sent]} · failed {task.fields[failed]}"),
                TextColumn("{task.fields[rate]:.0f}/s"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task(brand, total=self.total, sent=0, failed=0, rate=0.0)

    def __enter__(self) -> SendProgress:
        if self._bar:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._publish()
        if self._bar:
            self._bar.stop()

    def __call__(self, outcome: Outcome) -> None:
        if outcome.status is DeliveryStatus.SENT:
            self.sent += 1
        else:
            self.failed += 1
        if self._bar:
            self._bar.update(
                self._task,
                completed=self.done,
                sent=self.sent,
                failed=self.failed,
                rate=self.rate,
            )
        if time.monotonic() - self._artifact_at >= self.ARTIFACT_EVERY_S:
            self._publish()

    @property
    def done(self) -> int:
        return self.sent + self.failed

    @property
    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def _publish(self) -> None:
        self._artifact_at = time.monotonic()
        share = 100.0 * self.done / self.total if self.total else 100.0
        update_progress_artifact(
            self._artifact,
            min(share, 100.0),
            description=f"{self.brand}: sent {self.sent}, failed {self.failed}, {self.rate:.0f}/s",
        )
