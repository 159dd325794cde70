"""Bad input is refused before anything is done: one line, exit 2, no traceback, nothing written.

brand.toml, the ROLLOUT_* environment, the command's numbers, the exports folder, brand names,
paths, and `serve` without a Prefect server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

from flows.cli import main
from rollout.brands import BrandError, load_brand
from rollout.pins import HashParams
from rollout.settings import SettingsError, argon2_cost, load_settings
from rollout.transports import TransportConfigError

ROLLOUT = [sys.executable, "-m", "flows.cli"]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rollout: error: "), err
    return lines[0]


# --- brand.toml -------------------------------------------------------------------------------


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(REPO / "templates", root)
    monkeypatch.setenv("ROLLOUT_TEMPLATES", str(root))
    return root


def edit(root: Path, setting: str, line: str) -> Path:
    toml = root / "congstar" / "brand.toml"
    text = toml.read_text(encoding="utf-8")
    lines = [line if x.startswith(f"{setting} =") else x for x in text.splitlines()]
    assert lines != text.splitlines(), setting
    toml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return toml


@pytest.mark.parametrize(
    "setting, line, says",
    [
        ("pin_locations", 'pin_locations = "die congstar App"', "valid list"),
        ("mandatory_date", 'mandatory_date = "16.05.2022"', "not a date"),
        ("mandatory_date", "mandatory_date = 2022-05-16T08:00:00", "without a time"),
        ("daily_quota", "daily_quota = -5", "greater than or equal to 0"),
        ("daily_quota", 'daily_quota = "500"', "valid integer"),
        ("schedule", 'schedule = "every weekday at 8"', "not a cron expression"),
        ("display_name", "# display_name gone", "missing setting"),
    ],
)
def test_a_bad_brand_toml_names_the_file_and_the_setting(
    templates: Path,
    setting: str,
    line: str,
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = edit(templates, setting, line)
    with pytest.raises(BrandError) as refused:
        load_brand("congstar")
    assert str(toml) in str(refused.value) and setting in str(refused.value)
    assert says in str(refused.value)
    assert str(toml) in pins_refused(tmp_path, capsys)


def pins_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`rollout pins` on the samples exits 2 before it makes a state dir: its error line."""
    state = tmp_path / "state"
    assert main(["pins", "--exports", str(SAMPLES), "--state-dir", str(state)]) == 2
    assert not state.exists()
    return one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "setting, line, unknown",
    [
        ("schedule", 'shedule = "0 8 * * 1-5"', "shedule"),
        ("# delimiter", 'delimeter = ";"', "export.delimeter"),
    ],
)
def test_a_misspelled_key_in_brand_toml_is_an_error_before_any_work(
    templates: Path,
    setting: str,
    line: str,
    unknown: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = edit(templates, setting, line)
    assert pins_refused(tmp_path, capsys) == (
        f"rollout: error: {toml}: unknown setting {unknown!r} (misspelled?)"
    )


def test_a_quoted_iso_date_and_a_single_location_list_are_fine(templates: Path) -> None:
    edit(templates, "mandatory_date", 'mandatory_date = "2022-05-16"')
    edit(templates, "pin_locations", 'pin_locations = ["die congstar App"]')
    brand = load_brand("congstar")
    assert brand.mandatory_date.isoformat() == "2022-05-16"
    assert brand.pin_locations == ("die congstar App",)


# --- the environment and the command's numbers -----------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("ROLLOUT_ARGON2_TIME_COST", "0"),
        ("ROLLOUT_ARGON2_MEMORY_KIB", "lots"),
        ("ROLLOUT_ARGON2_PARALLELISM", "-1"),
    ],
)
def test_bad_argon2_settings_are_one_line_before_any_pin(
    name: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(name, value)
    state = tmp_path / "state"
    assert main(["pins", "--exports", str(SAMPLES), "--state-dir", str(state)]) == 2
    assert name in one_line(capsys.readouterr().err)
    assert not state.exists()


def test_argon2_memory_must_cover_the_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_ARGON2_PARALLELISM", "4")
    monkeypatch.setenv("ROLLOUT_ARGON2_MEMORY_KIB", "16")
    with pytest.raises(SettingsError, match="ROLLOUT_ARGON2_MEMORY_KIB must be at least 8"):
        load_settings()
    monkeypatch.delenv("ROLLOUT_TEST_ONLY_CHEAP_ARGON2")
    with pytest.raises(SettingsError, match="ROLLOUT_ARGON2_MEMORY_KIB must be at least 8"):
        HashParams.from_env()  # one home: the hasher reads the same settings


def test_a_flag_beats_the_environment_which_beats_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().exports is None  # no default exports folder
    monkeypatch.setenv("ROLLOUT_EXPORTS", str(SAMPLES))
    assert load_settings().exports == SAMPLES
    assert load_settings(exports=tmp_path).exports == tmp_path
    monkeypatch.setenv("ROLLOUT_ARGON2_TIME_COST", "")  # empty: the default
    assert argon2_cost(os.environ).time_cost == 2


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--connections", "0"],
        ["notify", "--connections", "many"],
        ["pins", "--chunk-size", "0"],
        ["run", "--limit", "-1"],
        ["notify", "--rate", "0"],
        ["preview", "--limit", "-3"],
    ],
)
def test_bad_numbers_are_one_line_and_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(args)
    assert refused.value.code == 2
    assert args[1] in one_line(capsys.readouterr().err)


def test_a_transport_url_with_braces_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    args = ["notify", "--transport", "maildir:out{1}", "--after-deadline", "--state-dir"]
    assert main([*args, str(state)]) == 2
    assert "maildir:out{1}" in one_line(capsys.readouterr().err)
    assert not state.exists()


# --- no default exports -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "pins", "preview", "serve"])
def test_real_commands_need_exports_named(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ROLLOUT_EXPORTS", raising=False)
    monkeypatch.chdir(REPO)  # where data/samples used to be the default
    state = tmp_path / "state"
    extra = ["--after-deadline"] if command == "run" else []
    assert main([command, "--state-dir", str(state), *extra]) == 2
    assert "give --exports DIR or set ROLLOUT_EXPORTS" in one_line(capsys.readouterr().err)
    assert not state.exists()

    monkeypatch.setenv("ROLLOUT_EXPORTS", str(tmp_path / "nowhere"))
    assert main([command, "--state-dir", str(state), *extra]) == 2
    assert "nowhere does not exist" in one_line(capsys.readouterr().err)


# --- typos ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--brand", "vodafone"],
        ["plan", "--brand", "vodafone"],
        ["unlock", "--brand", "vodafone"],
        ["unreachable", "--brand", "vodafone", "--out", "x.csv"],
        ["notify", "--brand", "vodafone", "--after-deadline"],
        ["resend", "--brand", "vodafone"],
        ["run", "--brand", "vodafone", "--exports", str(SAMPLES)],
        ["pins", "--brand", "congstar", "--brand", "vodafone", "--exports", str(SAMPLES)],
        ["preview", "--brand", "vodafone", "--exports", str(SAMPLES)],
        ["bounces", str(SAMPLES), "--brand", "vodafone"],
    ],
)
def test_an_unknown_brand_is_an_error_everywhere(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main([*args, "--state-dir", str(state)]) == 2
    assert "unknown brand 'vodafone'" in one_line(capsys.readouterr().err)
    assert not state.exists()


def test_bounces_from_a_missing_path_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["bounces", str(tmp_path / "nope.csv"), "--state-dir", str(state)]) == 2
    assert f"no such file or directory: {tmp_path}/nope.csv" in one_line(capsys.readouterr().err)
    assert not state.exists()


# --- the settings the flows take ---------------------------------------------------------------


def test_only_exports_and_transport_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROLLOUT_EXPORTS", str(SAMPLES))
    monkeypatch.setenv("ROLLOUT_TRANSPORT", "maildir:elsewhere")
    monkeypatch.setenv("ROLLOUT_AFTER_DEADLINE", "true")  # no hidden switches
    monkeypatch.setenv("ROLLOUT_UNPEPPERED", "true")
    given = load_settings(connections=8)
    assert (given.exports, given.transport, given.connections) == (SAMPLES, "maildir:elsewhere", 8)
    assert not given.after_deadline and not given.unpeppered
    assert load_settings(transport="maildir:flag").transport == "maildir:flag"  # the flag wins


def test_a_transport_url_with_credentials_never_becomes_a_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROLLOUT_TRANSPORT", "smtps://mailer:s3cret-Pa55@relay.example.com")
    with pytest.raises(TransportConfigError) as refused:
        load_settings()
    assert "credentials in the transport URL are not accepted" in str(refused.value)
    assert "s3cret-Pa55" not in str(refused.value)


def test_a_misspelled_setting_in_a_deployment_run_is_an_error() -> None:
    from prefect.exceptions import ParameterTypeError

    from flows.serve import scheduled_wave

    given = {"brand": "jamobil", "settings": {"exports": str(SAMPLES), "after_dealine": True}}
    with pytest.raises(ParameterTypeError, match=r"settings\.after_dealine"):
        scheduled_wave.validate_parameters(given)


# --- serve and the waves ----------------------------------------------------------------------


def test_serve_without_a_server_says_how_to_start_one(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [*ROLLOUT, "serve", "--exports", str(SAMPLES), "--state-dir", str(tmp_path / "s")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "prefect server start" in line and "PREFECT_API_URL=http://127.0.0.1:4200/api" in line


def test_serve_after_deadline_reaches_the_wave_deployments(tmp_path: Path) -> None:
    from flows.serve import deployments

    made = deployments(load_settings(exports=SAMPLES, state_dir=tmp_path, after_deadline=True))
    sending = [d for d in made if d.name != "preview"]  # type: ignore[attr-defined]
    assert [d.parameters["settings"]["after_deadline"] for d in sending] == [True] * 4  # type: ignore[attr-defined]
    late = deployments(load_settings(exports=SAMPLES, state_dir=tmp_path))
    assert not any(d.parameters["settings"]["after_deadline"] for d in late)  # type: ignore[attr-defined]


def test_a_deployment_leaves_an_unset_state_db_and_transport_to_the_worker_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.serve import deployments, scheduled_wave

    for name in ("ROLLOUT_STATE_URL", "ROLLOUT_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    unset = deployments(load_settings(exports=SAMPLES, state_dir=tmp_path))[0]
    pinned = deployments(
        load_settings(
            exports=SAMPLES,
            state_dir=tmp_path,
            state_url="postgresql://rollout@db-a.internal/rollout",
            transport="smtp://relay-a.internal:25",
        )
    )[0]
    # On the worker, with its own environment, as the engine validates a run's parameters.
    monkeypatch.setenv("ROLLOUT_STATE_URL", "postgresql://rollout@db-b.internal/rollout")
    monkeypatch.setenv("ROLLOUT_TRANSPORT", "smtp+starttls://relay-b.internal:587")
    on_worker = scheduled_wave.validate_parameters(unset.parameters)["settings"]  # type: ignore[attr-defined]
    assert on_worker.state_url == "postgresql://rollout@db-b.internal/rollout"
    assert on_worker.transport == "smtp+starttls://relay-b.internal:587"
    given = scheduled_wave.validate_parameters(pinned.parameters)["settings"]  # type: ignore[attr-defined]
    assert given.state_url == "postgresql://rollout@db-a.internal/rollout"
    assert given.transport == "smtp://relay-a.internal:25"


def test_the_deadline_message_names_the_flag_and_the_deployment_parameter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["notify", "--brand", "jamobil", "--state-dir", str(state)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--after-deadline" in line and "deployment parameter settings.after_deadline" in line


def test_a_late_wave_refuses_before_its_pin_stage(prefect_api: str, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    from flows.serve import scheduled_wave
    from rollout.notify import DeadlinePassed

    state = tmp_path / "state"
    params = {"brand": "jamobil", "settings": {"exports": str(SAMPLES), "state_dir": str(state)}}
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(
            scheduled_wave,
            parameters=params,
            state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=1)),
        )
    with pytest.raises(DeadlinePassed, match=r"deployment parameter settings\.after_deadline"):
        run_flow(scheduled_wave, flow_run=flow_run, parameters=params)
    assert not state.exists()  # no PIN drawn, nothing written back
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run.id).state.is_failed()  # type: ignore[union-attr]


def test_serve_refuses_a_transport_with_credentials_before_any_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "smtp+starttls://mailer:s3cret-Pa55@relay.example.com:587"
    args = ["serve", "--exports", str(SAMPLES), "--state-dir", str(tmp_path), "--transport", url]
    assert main(args) == 2
    line = one_line(capsys.readouterr().err)
    assert "credentials in the transport URL are not accepted" in line
    assert "s3cret-Pa55" not in line
