"""Deployments: a scheduled wave per brand, and ad-hoc preview and re-send runs.

Scheduling needs a Prefect server (`prefect server start`, or PREFECT_API_URL pointing at one):
the temporary server that plain runs start cannot schedule. A run that the scheduler missed
(the server or `rollout serve` was down) is not made up in a burst when it comes back: a wave
that starts more than `max_lateness_minutes` after its slot is skipped, and the next slot
carries on where the last wave stopped—the state DB knows who is pending.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, serve
from prefect.artifacts import create_markdown_artifact
from prefect.runner import Runner
from prefect.runtime import flow_run
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.artifacts import artifact_key, run_name
from flows.notify import resend_all
from flows.preview import preview_flow
from flows.run import rollout_run
from rollout.brands import load_brand, load_brands
from rollout.notify import check_deadline
from rollout.plan import forecast_markdown
from rollout.report import brand_forecast
from rollout.settings import Settings, SettingsError
from rollout.shutdown import Interrupted, received, requested, stop_gracefully
from rollout.state import StateStore

TIMEZONE = "Europe/Berlin"
# Runs import the installed package (flows.serve:scheduled_wave), not a file path that only
# resolves from the folder `serve` was started in.
BY_MODULE = EntrypointType.MODULE_PATH


def is_stale(scheduled: datetime, now: datetime, max_lateness: timedelta) -> bool:
    return now - scheduled > max_lateness


@flow(name="legi-pin-scheduled-wave", persist_result=False, flow_run_name=run_name("wave"))
def scheduled_wave(
    brand: str, settings: Settings, max_lateness_minutes: int = 120
) -> dict[str, object]:
    """One wave: new PINs from the latest export, then the next daily_quota announcements."""
    scheduled = flow_run.get_scheduled_start_time()
    if is_stale(scheduled, datetime.now(UTC), timedelta(minutes=max_lateness_minutes)):
        get_run_logger().warning(
            "skipping the wave of %s scheduled for %s: it is more than %d minutes late; "
            "the next scheduled wave continues where the last one stopped",
            brand,
            scheduled.isoformat(),
            max_lateness_minutes,
        )
        publish_forecast(brand, settings)
        return {"skipped": True, "scheduled": scheduled.isoformat()}
    # Guards before side effects: a wave that is going to refuse to send draws no PIN.
    today = settings.today or date.today()
    check_deadline(load_brand(brand), today, settings.after_deadline)
    settings.require_exports()
    settings.chosen_transport()
    result: dict[str, object] = dict(rollout_run(settings.model_copy(update={"brands": [brand]})))
    publish_forecast(brand, settings)
    return result


def publish_forecast(brand: str, settings: Settings) -> None:
    """After each wave: will everyone be told in time? (counts and dates only)."""
    state_dir = settings.state_dir
    store = StateStore.existing(state_dir, settings.state_url)
    if store is None:  # nothing has run yet: nothing to forecast, and nothing to create
        return
    with store:
        plan = brand_forecast(store, load_brand(brand), datetime.now(UTC))
    create_markdown_artifact(
        key=artifact_key("forecast", state_dir, brand),
        markdown=forecast_markdown(plan),
        description=f"Legi-PIN forecast, {brand}: {plan.verdict.replace('_', ' ')}",
    )


def require_server() -> None:
    """Scheduling needs a server that outlives this process: refuse in one line without one."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise SettingsError(
            "serve needs a Prefect server: start one with `prefect server start`, then set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api here and in the server's environment"
        )


def deployments(settings: Settings) -> list[object]:
    """A wave per brand on its schedule, and `preview` and `resend` to start by hand; each
    with the parameter `settings` (what `rollout serve` was given, no secret in it)."""
    # Runs start in other processes: absolute paths keep them pointing at the same folders.
    exports = settings.require_exports().resolve()
    common = settings.model_copy(
        update={"exports": exports, "state_dir": settings.state_dir.resolve()}
    )
    # What was not set stays out: where a run starts (a worker), its environment fills it in
    # (ROLLOUT_STATE_URL, ROLLOUT_TRANSPORT) as it does for the CLI; a null would override it.
    parameters = {"settings": common.model_dump(mode="json", exclude_none=True)}
    waves = [
        scheduled_wave.to_deployment(
            name=f"wave-{b.slug}",
            schedule=Cron(b.schedule, timezone=TIMEZONE) if b.schedule else None,
            parameters={"brand": b.slug, **parameters},
            description=f"Daily wave for {b.display_name}: PINs, then up to the daily quota.",
            entrypoint_type=BY_MODULE,
        )
        for b in load_brands()
    ]
    return [
        *waves,
        preview_flow.to_deployment(
            name="preview", parameters=parameters, entrypoint_type=BY_MODULE
        ),
        resend_all.to_deployment(name="resend", parameters=parameters, entrypoint_type=BY_MODULE),
    ]


def serve_all(settings: Settings) -> None:
    """Serve every deployment until Ctrl-C or SIGTERM: Prefect's shutdown pauses the schedules,
    then `Interrupted` says the command was stopped (exit 130 or 143, one line, no traceback)."""

    def shut_down() -> None:
        raise KeyboardInterrupt  # Prefect's serve shuts down on this and returns

    with stop_gracefully(shut_down), _sigterm_noted():
        serve(*deployments(settings))  # type: ignore[arg-type]
    if signum := requested():
        raise Interrupted(signum)


@contextmanager
def _sigterm_noted() -> Iterator[None]:
    """Prefect's runner replaces our SIGTERM handler with its own, which stops serving and
    returns as if all were done (exit 0). Its handler, wrapped, notes the signal first."""
    original = Runner.handle_sigterm

    def handle_sigterm(runner: Runner, *args: Any, **kwargs: Any) -> None:
        received(signal.SIGTERM)
        original(runner, *args, **kwargs)

    Runner.handle_sigterm = handle_sigterm  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        Runner.handle_sigterm = original  # type: ignore[method-assign]
