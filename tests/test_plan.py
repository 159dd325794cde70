"""`rollout plan`: will everyone be told before the mandatory date? Checked on known calendars.

The brands' real calendars are used where they fit: congstar (mandatory Monday 16 May 2022,
waves at 08:00 on working days) and ja!mobil (Monday 23 May 2022, 09:00 on working days).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path

import pytest
from conftest import NO_PREFECT_PROBE, REPO, SAMPLES

from rollout.brands import Brand, BrandError, campaign_id, load_brand
from rollout.plan import (
    BERLIN,
    Backlog,
    Forecast,
    Rate,
    forecast,
    measured_rate,
    start_of,
    summary_line,
    wave_slots,
)
from rollout.report import brand_forecast
from rollout.state import CustomerRecord, StateStore

NO_RATE = Rate(None, "none")
ROLLOUT = [sys.executable, "-m", "flows.cli"]


def berlin(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=BERLIN)


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


def brand(slug: str = "congstar", **changes: object) -> Brand:
    return replace(load_brand(slug), **changes)  # type: ignore[arg-type]


def plan(b: Brand, pending: int, as_of: date | datetime, rate: float | None = None) -> Forecast:
    start = start_of(as_of) if not isinstance(as_of, datetime) else as_of
    return forecast(b, Backlog(pending), Rate(rate, "given") if rate else NO_RATE, start)


# --- the schedule, DST-correct ------------------------------------------------------------


def test_a_daily_wave_stays_at_8_berlin_time_across_the_spring_change() -> None:
    """27 March 2022, the last Sunday of March: 08:00 is 07:00 UTC before, 06:00 UTC after."""
    slots = list(islice(wave_slots("0 8 * * *", start_of(date(2022, 3, 25))), 4))
    assert slots == [
        utc(2022, 3, 25, 7),
        utc(2022, 3, 26, 7),
        utc(2022, 3, 27, 6),
        utc(2022, 3, 28, 6),
    ]
    assert slots[2] - slots[1] == timedelta(hours=23)  # the short night


def test_a_skipped_time_runs_an_hour_later_and_a_repeated_one_once() -> None:
    spring = list(islice(wave_slots("30 2 * * *", start_of(date(2022, 3, 26))), 3))
    assert [s.astimezone(BERLIN).strftime("%d %H:%M %Z") for s in spring] == [
        "26 02:30 CET",
        "27 03:30 CEST",  # 02:30 does not exist that night
        "28 02:30 CEST",
    ]
    autumn = list(islice(wave_slots("30 2 * * *", start_of(date(2022, 10, 29))), 3))
    assert [s.astimezone(BERLIN).strftime("%d %H:%M %Z") for s in autumn] == [
        "29 02:30 CEST",
        "30 02:30 CEST",  # 02:30 comes twice that night: one wave, the first time
        "31 02:30 CET",
    ]


@pytest.mark.parametrize("cron", ["0 8 * * 1-5", "30 2 * * *", "0 * * * *", "*/20 1-3 * * *"])
@pytest.mark.parametrize("start", [utc(2022, 3, 24), utc(2022, 10, 27)])
def test_the_slots_are_those_prefects_scheduler_makes(cron: str, start: datetime) -> None:
    """Both DST changes, against the scheduler the waves really run on."""
    from prefect.server.schemas.schedules import CronSchedule

    theirs = asyncio.run(
        CronSchedule(cron=cron, timezone="Europe/Berlin").get_dates(n=80, start=start)
    )
    ours = list(islice(wave_slots(cron, start), 80))
    assert ours == [d.astimezone(UTC) for d in theirs]


def test_a_wave_that_outlasts_the_short_night_loses_the_next_slot() -> None:
    """846 mails at 0.01/s take 23.5 h. From Saturday 08:00 CET that is Sunday 08:30 CEST (the
    clocks went forward): the wave still holds the lock at Sunday's 08:00, so Monday's wave
    sends the rest. Wall-clock arithmetic would wrongly end it at 07:30."""
    b = brand(schedule="0 8 * * *", daily_quota=846, mandatory_date=date(2022, 4, 1))
    f = plan(b, 2 * 846, date(2022, 3, 26), rate=0.01)
    assert f.waves == 2
    assert f.first_wave == berlin(2022, 3, 26, 8)
    assert f.last_mail == berlin(2022, 3, 28, 8) + timedelta(seconds=845 * 100)
    assert f.last_mail.astimezone(BERLIN).strftime("%a %H:%M:%S") == "Tue 07:28:20"
    assert f.verdict == "on_time" and f.margin_days == 3


# --- a normal week ----------------------------------------------------------------------


def test_a_normal_week_mails_monday_to_friday_and_skips_the_weekend() -> None:
    ja = brand("jamobil", daily_quota=100)  # 09:00 on working days, mandatory Monday 23 May
    slots = list(islice(wave_slots(ja.schedule or "", start_of(date(2022, 5, 7))), 6))
    assert [s.astimezone(BERLIN).strftime("%a %d %H:%M") for s in slots] == [
        "Mon 09 09:00",
        "Tue 10 09:00",
        "Wed 11 09:00",
        "Thu 12 09:00",
        "Fri 13 09:00",
        "Mon 16 09:00",
    ]
    f = plan(ja, 450, date(2022, 5, 7))  # Saturday
    assert (f.waves, f.first_wave, f.last_mail) == (
        5,
        berlin(2022, 5, 9, 9),
        berlin(2022, 5, 13, 9),
    )
    assert (f.verdict, f.margin_days, f.late) == ("on_time", 10, 0)
    assert f.smallest_quota == 45  # the 10 working days before 23 May, 45 each
    assert f.latest_start == berlin(2022, 5, 16, 9)  # 5 waves: Mon 16 to Fri 20


def test_todays_wave_counts_when_planning_from_the_start_of_today() -> None:
    f = plan(brand(daily_quota=100), 100, date(2022, 5, 2))
    assert f.last_mail == berlin(2022, 5, 2, 8)
    later = plan(brand(daily_quota=100), 100, berlin(2022, 5, 2, 8, 1))
    assert later.last_mail == berlin(2022, 5, 3, 8)


# --- the mandatory date itself ----------------------------------------------------------


def test_a_quota_that_ends_the_day_before_the_mandatory_date_is_on_time() -> None:
    """From Monday 2 May: ten working-day waves before Monday 16 May; 10 x 100 ends Friday."""
    f = plan(brand(daily_quota=100), 1000, date(2022, 5, 2))
    assert (f.waves, f.last_mail) == (10, berlin(2022, 5, 13, 8))
    assert (f.verdict, f.margin_days, f.late) == ("on_time", 3, 0)
    daily = plan(brand(daily_quota=100, schedule="0 8 * * *"), 1400, date(2022, 5, 2))
    assert (daily.last_mail, daily.margin_days) == (berlin(2022, 5, 15, 8), 1)


def test_a_wave_at_8_on_the_mandatory_date_is_late() -> None:
    """The PIN is asked for from 00:00 on 16 May: the eleventh wave, 08:00 that day, is late."""
    f = plan(brand(daily_quota=100), 1100, date(2022, 5, 2))
    assert f.last_mail == berlin(2022, 5, 16, 8)
    assert (f.verdict, f.late, f.margin_days) == ("late", 100, None)
    assert "LATE: 100 customers on or after 2022-05-16" in summary_line(f)


def test_the_deadline_is_midnight_to_the_second_under_a_rate_cap() -> None:
    """120 mails at one a second from 23:59 the night before: 60 go out before midnight."""
    f = plan(brand(schedule="59 23 * * *"), 120, date(2022, 5, 15), rate=1.0)
    assert f.last_mail == berlin(2022, 5, 16, 0, 0, 59)
    assert f.late == 60


# --- late by N, and what fixes it -------------------------------------------------------


def test_a_plan_late_by_exactly_734_customers_and_its_fixes() -> None:
    """1,234 pending at 100 a wave from Monday 9 May: five waves before 16 May mail 500."""
    f = plan(brand(daily_quota=100), 1234, date(2022, 5, 9))
    assert (f.verdict, f.late, f.waves) == ("late", 734, 13)
    assert f.last_mail == berlin(2022, 5, 25, 8)  # waves 6-13: 16-20 and 23-25 May
    assert f.smallest_quota == 247  # ceil(1234 / 5)
    assert f.latest_start == berlin(2022, 4, 27, 8)  # 13 working days back from Fri 13 May
    line = summary_line(f)
    assert "LATE: 734 customers" in line and "quota of 247" in line and "2022-04-27 08:00" in line


def test_the_smallest_quota_is_the_smallest_that_makes_it() -> None:
    f = plan(brand(daily_quota=100), 1234, date(2022, 5, 9))
    assert f.smallest_quota is not None
    assert plan(brand(daily_quota=f.smallest_quota), 1234, date(2022, 5, 9)).late == 0
    assert plan(brand(daily_quota=f.smallest_quota - 1), 1234, date(2022, 5, 9)).late > 0


def test_the_latest_start_is_the_last_start_that_makes_it() -> None:
    f = plan(brand(daily_quota=100), 1234, date(2022, 5, 9))
    assert f.latest_start is not None
    assert plan(brand(daily_quota=100), 1234, f.latest_start).late == 0
    assert plan(brand(daily_quota=100), 1234, f.latest_start + timedelta(minutes=1)).late > 0


def test_under_a_rate_cap_the_answers_account_for_how_long_a_wave_takes() -> None:
    """At one mail a minute, a 20:00 wave sends 240 before midnight. From Friday 13 May, waves
    of 300 on 13, 14 and 15 May leave 60 customers for after 16 May 00:00."""
    b = brand(schedule="0 20 * * *", daily_quota=300)
    f = plan(b, 900, date(2022, 5, 13), rate=1 / 60)
    assert (f.verdict, f.late, f.waves) == ("late", 60, 3)
    assert f.last_mail == berlin(2022, 5, 15, 20) + timedelta(minutes=299)
    assert f.smallest_quota == 330  # 330 + 330 + the 240 the last wave sends before midnight
    assert f.latest_start == berlin(2022, 5, 12, 20)
    assert plan(replace(b, daily_quota=330), 900, date(2022, 5, 13), rate=1 / 60).late == 0


def test_no_slot_before_the_date_means_no_quota_makes_it() -> None:
    f = plan(brand(daily_quota=0), 10, date(2022, 5, 16))
    assert (f.verdict, f.late, f.smallest_quota) == ("late", 10, None)
    assert f.latest_start == berlin(2022, 5, 13, 8)  # it would have needed Friday's wave


def test_without_a_schedule_nobody_is_mailed_and_it_says_so() -> None:
    f = plan(brand(schedule=None), 5, date(2022, 5, 2))
    assert (f.verdict, f.late, f.last_mail) == ("late", 5, None)
    assert "no schedule" in summary_line(f)


def test_a_bad_cron_names_the_brand_file() -> None:
    with pytest.raises(BrandError, match=r"congstar/brand.toml: schedule '0 8 \* \*'"):
        plan(brand(schedule="0 8 * *"), 5, date(2022, 5, 2))


# --- the measured rate ------------------------------------------------------------------


def test_the_measured_rate_is_that_of_the_last_three_waves() -> None:
    def wave(start: datetime, seconds: int, per_second: int) -> list[tuple[datetime, int]]:
        return [(start + timedelta(seconds=s), per_second) for s in range(seconds)]

    old = wave(utc(2022, 5, 2, 6), 10, 1)  # a slow first wave, then three at 50/s
    recent = [wave(utc(2022, 5, d, 6), 20, 50) for d in (3, 4, 5)]
    rate = measured_rate([*old, *recent[0], *recent[1], *recent[2]])
    assert rate == Rate(50.0, "measured", 3 * 20 * 50)
    assert measured_rate([]) == Rate(None, "none")


# --- from the state DB ------------------------------------------------------------------


def customer(cid: str, email: str) -> CustomerRecord:
    from rollout.model import PinSource

    return CustomerRecord(cid, "$argon2id$x", PinSource.GENERATED, "A", "B", email, None)


def test_soft_failures_and_resendable_bounces_are_pending_the_rest_waits(tmp_path: Path) -> None:
    b = brand(daily_quota=0)
    camp = campaign_id(b)
    with StateStore.in_dir(tmp_path) as store:
        people = [customer(f"c{i}", f"c{i}@example.org") for i in range(9)]
        store.record_chunk("congstar", people, [])
        for c in people[:7]:
            store.mark_sending("congstar", camp, c.customer_id, f"<{c.customer_id}@x>", c.email)
        fin = store.mark_finished
        fin("congstar", camp, "c0", "sent", 250, "ok")
        fin("congstar", camp, "c1", "failed", 451, "try later")  # soft: resend mails it
        fin("congstar", camp, "c2", "failed", 550, "no such user", permanent=True)  # decide
        store.mark_bounced("congstar", camp, "c3", True, 550, "gone")  # hard, same address
        store.mark_bounced("congstar", camp, "c4", True, 550, "gone")  # hard, then a new one:
        store.record_chunk("congstar", [customer("c4", "new@example.org")], [])
        store.mark_bounced("congstar", camp, "c5", False, 452, "mailbox full")  # soft
        store.mark_interrupted("congstar", camp)  # c6 was 'sending' when the run died
        # c7, c8: never mailed
        f = brand_forecast(store, b, start_of(date(2022, 5, 2)), rate=None)
    assert f.backlog == Backlog(new=2, retry=3, unknown=1, failed=1, bounced=1)
    assert f.backlog.pending == 5
    assert f.as_dict()["awaiting_decision"] == {"unknown": 1, "failed": 1, "bounced": 1}
    assert "waiting for a decision: 1 unknown, 1 failed, 1 bounced" in summary_line(f)


def test_the_rate_comes_from_the_option_else_from_recent_sends(tmp_path: Path) -> None:
    b = brand()
    camp = campaign_id(b)
    with StateStore.in_dir(tmp_path) as store:
        as_of = start_of(date(2022, 5, 2))
        assert brand_forecast(store, b, as_of).rate == NO_RATE
        people = [customer(f"c{i:03}", f"c{i}@example.org") for i in range(100)]
        store.record_chunk("congstar", people, [])
        for i, c in enumerate(people[:40]):  # 10 mails in each of 4 seconds: 10/s
            store.mark_sending("congstar", camp, c.customer_id, f"<{i}@x>", c.email)
            store.mark_finished("congstar", camp, c.customer_id, "sent", 250, "ok")
            at = utc(2022, 5, 1, 6) + timedelta(seconds=i // 10)
            store.db.exec_driver_sql(
                "UPDATE deliveries SET updated_at = ? WHERE customer_id = ?",
                (at.isoformat(timespec="seconds"), c.customer_id),
            )
        measured = brand_forecast(store, b, as_of)
        given = brand_forecast(store, b, as_of, rate=2.5)
    assert measured.rate == Rate(10.0, "measured", 40)
    assert measured.backlog.pending == 60
    assert given.rate == Rate(2.5, "given")
    assert given.last_mail == berlin(2022, 5, 2, 8) + timedelta(seconds=59 / 2.5)


# --- the command, end to end on the samples -----------------------------------------------


@pytest.fixture(scope="module")
def sample_state(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Path:
    """The samples after `rollout pins`: everyone has a PIN, nobody was mailed yet."""
    state = tmp_path_factory.mktemp("plan") / "state"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    done = subprocess.run(
        [*ROLLOUT, "pins", "--exports", str(SAMPLES), "--state-dir", str(state)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return state


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plan_on_the_samples_as_json_without_prefect(sample_state: Path) -> None:
    """No Prefect server (the URL points nowhere) and no Prefect import; the DB is untouched."""
    db = sample_state / "state.sqlite3"
    before = digest(db)
    slugs = ("congstar", "jamobil", "pennymobil")
    with StateStore.in_dir(sample_state, read_only=True) as store:
        pending = {s: store.pending_count(s, campaign_id(load_brand(s))) for s in slugs}
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = subprocess.run(
        [sys.executable, "-c", NO_PREFECT_PROBE, "plan", "--state-dir", str(sample_state),
         "--today", "2022-05-02", "--json"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # 3 would mean Prefect was imported
    plans = {p["brand"]: p for p in json.loads(done.stdout)}
    assert sorted(plans) == ["congstar", "jamobil", "pennymobil"]
    for slug, p in plans.items():
        assert p["pending"] == pending[slug] > 300
        assert (p["verdict"], p["late"], p["waves"]) == ("on_time", 0, 1)
    assert plans["congstar"]["last_mail"] == "2022-05-02T08:00:00+02:00"
    assert plans["congstar"]["margin_days"] == 14
    assert plans["jamobil"]["last_mail"] == "2022-05-02T09:00:00+02:00"
    assert plans["jamobil"]["margin_days"] == 21
    assert plans["jamobil"]["latest_start"] == "2022-05-20T09:00:00+02:00"
    assert digest(db) == before


def test_plan_without_a_state_db_says_so_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [*ROLLOUT, "plan", "--state-dir", str(tmp_path / "none")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no state DB" in done.stderr
    assert not (tmp_path / "none").exists()


def test_status_shows_the_forecast_line(
    sample_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    assert main(["status", "--json", "--state-dir", str(sample_state)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["forecast"].split(":")[0] for r in rows] == ["congstar", "jamobil", "pennymobil"]
    assert all("pending" in r["forecast"] for r in rows)
    assert main(["status", "--state-dir", str(sample_state)]) == 0
    assert capsys.readouterr().out.count("\nforecast ") == 3


@pytest.mark.parametrize("outcome", ["failed", "unknown"])
def test_status_exits_1_while_anyone_is_failed_or_unknown(outcome: str, tmp_path: Path) -> None:
    """The exit code table's 1: usable as a check in cron."""
    from test_notify import prepared_state, reachable

    from flows.cli import main

    store = prepared_state(tmp_path, "jamobil")
    campaign = campaign_id(load_brand("jamobil"))
    customer, address = next(iter(reachable(store, "jamobil").items()))
    args = ["status", "--brand", "jamobil", "--state-dir", str(tmp_path)]
    assert main(args) == 0  # everyone pending: nobody is left behind yet
    store.mark_sending("jamobil", campaign, customer, f"<{customer}@test>", address)
    if outcome == "failed":
        store.mark_finished("jamobil", campaign, customer, "failed", 550, "550 5.1.1 no such user")
    else:
        store.mark_interrupted("jamobil", campaign)  # killed between DATA and the reply
    store.close()
    assert main(args) == 1


def test_plan_prints_a_table_and_the_verdict_lines(
    sample_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    assert main(["plan", "--state-dir", str(sample_state), "--today", "2022-05-02", "--brand",
                 "congstar", "--rate", "0.01"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    # ~385 mails at 0.01/s take ~10.7 h: one wave, still well before 16 May
    assert "congstar:" in out and "on time (14 days before 2022-05-16)" in out
    assert "last mail Mon 2022-05-02 18:" in out


# --- the wave artifact ------------------------------------------------------------------


def test_each_wave_publishes_the_forecast_as_markdown(prefect_api: str, tmp_path: Path) -> None:
    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    from flows.serve import scheduled_wave

    state = tmp_path / "state"
    params = {
        "brand": "pennymobil",
        # the date is past: a rehearsal
        "settings": {"exports": str(SAMPLES), "state_dir": str(state), "after_deadline": True},
    }
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(
            scheduled_wave, parameters=params, state=Scheduled(scheduled_time=datetime.now(UTC))
        )
    result = run_flow(scheduled_wave, flow_run=run, parameters=params)
    assert result["pennymobil"]["notify"]["sent"] > 300  # type: ignore[index]
    from flows.artifacts import artifact_key

    artifact = Artifact.get(artifact_key("forecast", state, "pennymobil"))
    assert artifact is not None and artifact.type == "markdown"
    text = str(artifact.data)
    assert "pennymobil: nobody pending" in text
    sample = (SAMPLES / "pennymobil.csv").read_text(encoding="utf-8", errors="replace")
    addresses = {w for w in sample.replace(";", ",").split(",") if "@" in w}
    assert addresses and not any(a in text for a in addresses)  # counts only
