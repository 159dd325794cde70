"""The flows on the real Prefect engine, and the `rollout` command as an operator runs it."""

from __future__ import annotations

import base64
import json
import mailbox
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import REPO, SAMPLES, TEST_PEPPERS, TEST_SEAL_KEYS, state_of
from sqlalchemy import text

import rollout.pins
from rollout.brands import load_brand
from rollout.seal import open_pin
from rollout.settings import Settings
from synthetic import write_synthetic_export

ROLLOUT = [sys.executable, "-m", "flows.cli"]


def rollout_cmd(
    *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*ROLLOUT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"rollout {args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def hashes(state_dir: Path, brand: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """customer_id -> hash in the state DB that a `rollout` child with `env` writes."""
    store = state_of(state_dir, env or {})
    if store is None:
        return {}
    with store:
        rows = store.db.execute(
            text("SELECT customer_id, pin_hash FROM customers WHERE brand = :b"), {"b": brand}
        )
        return dict(rows.all())


# --- no plaintext PIN anywhere ----------------------------------------------------------

# A PIN counts as found only as a token of its own: not inside a longer number, a base64 salt,
# a UUID or a date, where any four digits turn up by chance.
_NOT_PART_OF = r"0-9A-Za-z+/.:\-"


_FOUR_DIGITS = re.compile(rf"(?<![{_NOT_PART_OF}])[0-9]{{4}}(?![{_NOT_PART_OF}])")


def tokens(text: str) -> set[str]:
    """Every stand-alone four-digit token of `text` (one pass, however many PINs we look for)."""
    return set(_FOUR_DIGITS.findall(text))


def find_token(text: str, pin: str) -> bool:
    return pin in tokens(text)


def texts_below(*roots: Path) -> Iterator[tuple[Path, str]]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                yield path, path.read_bytes().decode("utf-8", errors="replace")


def test_the_leak_scanner_finds_a_pin_where_one_is_written() -> None:
    assert find_token('{"pin": "4711"}', "4711")
    assert find_token("PIN 4711 for Max", "4711")
    assert not find_token("$argon2id$v=19$m=64,t=1,p=1$ab4711cd", "4711")
    assert not find_token("2c0e4711-9a1b", "4711")


def prefect_api_database() -> Path:
    """The SQLite file of the test harness's Prefect API server (parameters, states, logs,
    artifacts of every run in the session)."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    assert url.startswith("sqlite+aiosqlite:///"), url
    return Path(url.removeprefix("sqlite+aiosqlite:///"))


def database_text(path: Path) -> str:
    """Every value of every table, as text (the WAL included: it is read through SQLite)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(
            " ".join(str(v) for v in row)
            for table in tables
            for row in db.execute(f'SELECT * FROM "{table}"')
        )


def _around(text: str, pin: str) -> str:
    match = re.search(rf"(?<![{_NOT_PART_OF}]){pin}(?![{_NOT_PART_OF}])", text)
    return text[max(0, match.start() - 80) : match.end() + 80] if match else ""


SAMPLE_ADDRESSES = re.compile(r"[^\s,;\"'<>]+@[^\s,;\"'<>]+")


def test_no_plaintext_pin_is_left_behind(
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Nothing a run leaves behind (state dir, Prefect home, the Prefect API database, the
    terminal) holds a PIN it drew, a pepper or a private key; Prefect's database holds no SMTP
    password or customer address either."""
    from flows.run import rollout_run
    from smtp_server import SmtpTestServer

    drawn: list[str] = []
    real_generate = rollout.pins.generate_pin

    def spy(birth_date: object, *args: object) -> rollout.pins.SecretPin:
        pin = real_generate(birth_date, *args)  # type: ignore[arg-type]
        drawn.append(pin.reveal())
        return pin

    monkeypatch.setattr(rollout.pins.batch, "generate_pin", spy)  # where the PIN stage draws
    state = tmp_path / "state"
    # The API database is the whole session's: four digits other tests (or Prefect's own
    # content, e.g. "port=8080") left there are no evidence.
    api_db = prefect_api_database()
    earlier = tokens(database_text(api_db))
    password = "Pw-leak-canary-8c1f"
    monkeypatch.setenv("ROLLOUT_SMTP_USER", "mailer")
    monkeypatch.setenv("ROLLOUT_SMTP_PASSWORD", password)
    with SmtpTestServer(credentials=("mailer", password)) as relay:
        url = f"{relay.url}?insecure_auth=loopback"
        given = Settings(exports=SAMPLES, state_dir=state, transport=url, after_deadline=True)
        run = rollout_run(given, return_state=True)
        run.result()
        assert len(relay.received) > 1_000
    out, err = capfd.readouterr()
    runs = flow_run_parameters(str(state))
    assert runs[run.state_details.flow_run_id] == {"settings": given.model_dump(mode="json")}
    assert len(runs) == 7  # the run, and per brand its PIN stage and its notify flow
    for parameters in runs.values():
        assert set(parameters) <= {"settings", "brand", "window", "threads", "resend"}
        assert Settings.model_validate(parameters["settings"]) == given
    assert password not in json.dumps([*runs.values()])  # and no SMTP user's password

    # Four digits that the inputs or the calendar already hold are no evidence either way, nor
    # are the flows' parameters, which Prefect records (chunk_size=5000).
    inputs = set().union(*(tokens(text) for _, text in texts_below(SAMPLES, REPO / "templates")))
    inputs |= flow_parameter_tokens()
    public = {p for p in drawn if p in inputs or 1900 <= int(p) <= 2100}
    checked = set(drawn) - public
    assert len(drawn) > 500 and len(checked) > 0.8 * len(set(drawn))

    prefect_home = Path(os.environ["PREFECT_HOME"])
    in_prefect = [*texts_below(prefect_home), (api_db, database_text(api_db))]
    left_behind = [*texts_below(state), *in_prefect, (Path("stdout"), out), (Path("stderr"), err)]
    leaks = [
        (str(path), sorted(tokens(text) & (checked - earlier if path == api_db else checked)))
        for path, text in left_behind
    ]
    found = {path: text for path, text in left_behind}
    where = [(path, pin, _around(found[Path(path)], pin)) for path, pins in leaks for pin in pins]
    assert where == []
    assert any(p.name == "state.sqlite3" for p, _ in left_behind)

    # What Prefect keeps: the runs of this test are there, with no secret and no address.
    addresses = {
        a for _, text in texts_below(SAMPLES) for a in SAMPLE_ADDRESSES.findall(text) if "." in a
    }
    assert len(addresses) > 1_000
    prefect_text = "\n".join(text for _, text in in_prefect)
    assert str(state) in prefect_text  # the flow runs' parameters are in there
    assert password not in prefect_text
    assert sorted(a for a in addresses if a in prefect_text) == []

    # Nor any pepper or private key, in any spelling (the pipeline never even has the latter).
    secrets = [
        *(spelling for key in TEST_PEPPERS.values() for spelling in spellings(key)),
        *(spelling for private, _ in TEST_SEAL_KEYS.values() for spelling in spellings(private)),
    ]
    blobs = [*binaries_below(state, prefect_home, api_db.parent), out.encode(), err.encode()]
    assert not [s for s in secrets for blob in blobs if s in blob]

    # Three brands, three peppers, one run: each brand's hashes name its own pepper, and each
    # sealed copy opens with its own brand's private key.
    for brand, (private, _) in TEST_SEAL_KEYS.items():
        with sqlite3.connect(state / "state.sqlite3") as db:
            rows = db.execute(
                "SELECT customer_id, pin_hash, pin_sealed FROM customers "
                "WHERE brand = ? AND pin_source = 'generated'",
                (brand,),
            ).fetchall()
        assert len(rows) > 300
        peppers = {f"test-{brand}": TEST_PEPPERS[brand]}
        for cid, pin_hash, sealed in rows[:20]:
            pin = open_pin(sealed, private, brand, cid)
            assert rollout.pins.verify_pin(pin_hash, pin, cid, peppers)


def flow_parameter_tokens() -> set[str]:
    import inspect

    from flows.notify import notify_for_brand
    from flows.pins import pins_for_brand
    from flows.run import rollout_run

    defaults = [
        parameter.default
        for flow_ in (rollout_run, pins_for_brand, notify_for_brand)
        for parameter in inspect.signature(flow_.fn).parameters.values()
    ]
    defaults += [field.default for field in Settings.model_fields.values()]
    return set().union(*(tokens(str(d)) for d in defaults))


def flow_run_parameters(state_dir: str) -> dict[UUID, dict[str, Any]]:
    """The parameters of the flow runs of `state_dir`, as the Prefect API holds them."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
    return {r.id: r.parameters for r in runs if state_dir in json.dumps(r.parameters)}


def spellings(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret).rstrip(b"="),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


def binaries_below(*roots: Path) -> Iterator[bytes]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                yield path.read_bytes()


# --- the PIN flow on the engine ---------------------------------------------------------


def test_pins_flow_covers_every_brand_and_publishes_a_table(
    prefect_api: str, tmp_path: Path
) -> None:
    from flows.pins import pins_all

    results = pins_all(Settings(exports=SAMPLES, state_dir=tmp_path))
    assert [r["brand"] for r in results] == ["congstar", "jamobil", "pennymobil"]
    for r in results:
        brand = str(r["brand"])
        assert (tmp_path / "writeback" / f"{brand}.csv").is_file()
        assert r["rejected"], "every sample carries bad rows"
        assert len(hashes(tmp_path, brand)) == int(r["generated"]) + int(r["kept"])  # type: ignore[call-overload]


# --- kill and re-run --------------------------------------------------------------------


def test_a_killed_pin_run_resumes_without_a_second_pin_for_anyone(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    child_env = backend_env
    exports, state = tmp_path / "exports", tmp_path / "state"
    exports.mkdir()
    write_synthetic_export(exports / "congstar.csv", 4_000, style="congstar", seed=7)
    slow = {k: v for k, v in child_env.items() if k != "ROLLOUT_TEST_ONLY_CHEAP_ARGON2"}
    args = ["pins", "--brand", "congstar", "--exports", str(exports), "--state-dir", str(state)]
    child = subprocess.Popen([*ROLLOUT, *args, "--chunk-size", "200"], env=slow, cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while len(hashes(state, "congstar", child_env)) < 400:
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    before = hashes(state, "congstar", child_env)
    assert 400 <= len(before) < 4_000 * 0.99

    rollout_cmd(*args, env=child_env)

    after = hashes(state, "congstar", child_env)
    assert {cid: after[cid] for cid in before} == before  # nobody got a second PIN
    writeback = (state / "writeback" / "congstar.csv").read_text(encoding="cp1252")
    assert all(h in writeback for h in after.values())
    again = json.loads(
        rollout_cmd("status", "--json", "--state-dir", str(state), env=child_env).stdout
    )
    assert again[0]["customers"] == 4_000


# --- the whole job through the command --------------------------------------------------


def test_the_main_job_mails_everyone_reachable_once(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    """On SQLite (the state DB in the state dir) and on PostgreSQL, named by --state-url as the
    README shows; the files stay in the state dir either way."""
    url = backend_env.get("ROLLOUT_STATE_URL")
    env = {k: v for k, v in backend_env.items() if k != "ROLLOUT_STATE_URL"}
    state = tmp_path / "state"
    where = ["--state-dir", str(state), *(["--state-url", url] if url else [])]
    args = ["--exports", str(SAMPLES), *where]
    refused = rollout_cmd("run", *args, env=env, check=False)
    assert refused.returncode == 2 and "--after-deadline" in refused.stderr

    rollout_cmd("run", *args, "--after-deadline", env=env)
    status = json.loads(rollout_cmd("status", "--json", *where, env=env).stdout)
    outbox = mailbox.Maildir(state / "outbox", create=False)
    recipients = [m["To"] for m in outbox]
    assert len(recipients) == sum(s["sent"] for s in status) == len(set(recipients))
    for s in status:
        assert s["pending"] == 0 and s["unreachable"], s
        assert s["mandatory_date"] == load_brand(s["brand"]).mandatory_date.isoformat()
        assert (state / "writeback" / f"{s['brand']}.csv").is_file()

    rollout_cmd("run", *args, "--after-deadline", env=env)  # a second run mails nobody
    assert len(mailbox.Maildir(state / "outbox", create=False)) == len(recipients)
    if url:  # the state lives in PostgreSQL only: no SQLite file, no lock files
        assert not (state / "state.sqlite3").exists() and not (state / "locks").exists()
