"""Deployments: a scheduled wave per brand, and ad-hoc preview and re-send runs.

Scheduling needs a Prefect server (`prefect server start`, or PREFECT_API_URL pointing at one):
the temporary server that plain runs start cannot schedule. A run that the scheduler missed
(the server or `rollout serve` was down) is not made up in a burst when it comes back: a wave
that starts more than `max_lateness_minutes` after its slot is skipped, and the next slot
carries on where the last wave stopped—the state DB knows who is pending.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, serve
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.artifacts import artifact_key, run_name
from flows.notify import chosen_transport, resend_all
from flows.preview import preview_flow
from flows.run import rollout_run
from rollout.brands import load_brand, load_brands
from rollout.notify import check_deadline
from rollout.plan import forecast_markdown
from rollout.report import brand_forecast
from rollout.settings import SettingsError, exports_folder
from rollout.state import StateStore

TIMEZONE = "Europe/Berlin"
# Runs import the installed package (flows.serve:scheduled_wave), not a file path that only
# resolves from the folder `serve` was started in.
BY_MODULE = EntrypointType.MODULE_PATH


def is_stale(scheduled: datetime, now: datetime, max_lateness: timedelta) -> bool:
    return now - scheduled > max_lateness


@flow(name="legi-pin-scheduled-wave", persist_result=False, flow_run_name=run_name("wave"))
def scheduled_wave(
    brand: str,
    exports_dir: str | None = None,
    state_dir: str = ".rollout",
    transport: str | None = None,
    max_lateness_minutes: int = 120,
    after_deadline: bool = False,
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
        publish_forecast(brand, state_dir)
        return {"skipped": True, "scheduled": scheduled.isoformat()}
    # Guards before side effects: a wave that is going to refuse to send draws no PIN.
    check_deadline(load_brand(brand), date.today(), after_deadline)
    exports = exports_folder(exports_dir)
    chosen_transport(transport, state_dir)
    result: dict[str, object] = dict(
        rollout_run([brand], str(exports), state_dir, transport, after_deadline=after_deadline)
    )
    publish_forecast(brand, state_dir)
    return result


def publish_forecast(brand: str, state_dir: str) -> None:
    """After each wave: will everyone be told in time? (counts and dates only)."""
    store = StateStore.existing(Path(state_dir))
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


def deployments(
    exports_dir: Path, state_dir: Path, transport: str | None, after_deadline: bool = False
) -> list[object]:
    # Runs start in other processes: absolute paths keep them pointing at the same folders.
    common = {"exports_dir": str(exports_dir.resolve()), "state_dir": str(state_dir.resolve())}
    waves = [
        scheduled_wave.to_deployment(
            name=f"wave-{b.slug}",
            schedule=Cron(b.schedule, timezone=TIMEZONE) if b.schedule else None,
            parameters={
                "brand": b.slug,
                **common,
                "transport": transport,
                "after_deadline": after_deadline,
            },
            description=f"Daily wave for {b.display_name}: PINs, then up to the daily quota.",
            entrypoint_type=BY_MODULE,
        )
        for b in load_brands()
    ]
    return [
        *waves,
        preview_flow.to_deployment(name="preview", parameters=common, entrypoint_type=BY_MODULE),
        resend_all.to_deployment(
            name="resend",
            parameters={
                "state_dir": common["state_dir"],
                "transport": transport,
                "after_deadline": after_deadline,
            },
            entrypoint_type=BY_MODULE,
        ),
    ]


def serve_all(
    exports_dir: Path, state_dir: Path, transport: str | None, after_deadline: bool = False
) -> None:
    """Serve every deployment until interrupted (Ctrl-C pauses the schedules)."""
    serve(*deployments(exports_dir, state_dir, transport, after_deadline))  # type: ignore[arg-type]
