"""Transports against a real aiosmtpd server: URL parsing, TLS, AUTH, how failures are sorted."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.transports import (
    CampaignBlocked,
    ConnectionFailed,
    DeliveryError,
    MaildirTransport,
    PermanentError,
    SmtpTransport,
    TransientError,
    Transport,
    TransportConfigError,
    maildir_name,
    open_transport,
)
from smtp_server import (
    Fault,
    SmtpTestServer,
    disconnect,
    drop,
    garbled_reply,
    lost_reply,
    reject,
    self_signed,
    serve,
    slow_reply,
    tempfail,
)

CREDS = {"ROLLOUT_SMTP_USER": "mailer", "ROLLOUT_SMTP_PASSWORD": "s3cret-Pa55"}


def message(n: int = 1, message_id: str | None = None) -> bytes:
    mid = message_id or f"<m{n}.legi-pin@example.org>"
    return (
        f"From: Service <service@example.org>\r\nTo: r{n}@example.org\r\n"
        f"Message-ID: {mid}\r\nSubject: Ihre Legi-PIN\r\n\r\nHallo {n}\r\n.leading dot\r\n"
    ).encode()


def send(transport: Transport, *items: tuple[str, bytes]) -> list[object]:
    """Send each (recipient, data) over one connection; the Reply or the error, per message."""

    async def run() -> list[object]:
        connection = transport.connection()
        results: list[object] = []
        try:
            for recipient, data in items:
                try:
                    results.append(await connection.send("service@example.org", recipient, data))
                except DeliveryError as exc:
                    results.append(exc)
        finally:
            await connection.close()
        return results

    return asyncio.run(run())


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with serve() as s:
        yield s


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    pytest.importorskip("cryptography")
    return self_signed(tmp_path_factory.mktemp("tls"))


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "security", "timeout"),
    [
        ("smtp://mail.example.com", "mail.example.com", 25, "plain", 60.0),
        ("smtp://10.0.0.5:2525?timeout=7.5&helo=out1.congstar.de", "10.0.0.5", 2525, "plain", 7.5),
        ("smtp+starttls://relay.example.com", "relay.example.com", 587, "starttls", 60.0),
        ("SMTPS://[::1]", "::1", 465, "tls", 60.0),
    ],
)
def test_smtp_urls(url: str, host: str, port: int, security: str, timeout: float) -> None:
    transport = open_transport(url, env={})
    assert isinstance(transport, SmtpTransport)
    assert (transport.host, transport.port, transport.security) == (host, port, security)
    assert transport.timeout == timeout
    assert transport.username is None


def test_maildir_urls(tmp_path: Path) -> None:
    relative = open_transport("maildir:.rollout/outbox", env={})
    assert relative == MaildirTransport(Path(".rollout/outbox"))
    absolute = open_transport(f"maildir://{tmp_path}/out?fsync=false", env=CREDS)
    assert absolute == MaildirTransport(tmp_path / "out", fsync=False)
    assert absolute.description == f"maildir:{tmp_path}/out"


@pytest.mark.parametrize(
    ("url", "env", "says"),
    [
        ("mail.example.com:25", {}, "use maildir:PATH"),
        ("http://mail.example.com", {}, "unknown transport scheme 'http'"),
        ("smtp://mailer:s3cret-Pa55@mail.example.com", {}, "set ROLLOUT_SMTP_USER and"),
        ("smtp://mailer:s3c/ret?x@mail.example.com", {}, "credentials in the transport URL"),
        ("smtp://mail.example.com:99999", {}, "invalid port"),
        ("smtp://:25", {}, "names no host"),
        ("smtp://mail.example.com/inbox", {}, "must not have a path"),
        ("smtp://mail.example.com?tiemout=3", {}, "unknown transport option tiemout"),
        ("smtp://mail.example.com?timeout=-1", {}, "positive number of seconds"),
        ("smtp://mail.example.com?helo=a%0D%0Ab", {}, "helo must be a host name"),
        ("smtps://mail.example.com?cafile=/nonexistent.pem", {}, "not a readable file"),
        ("smtp://mail.example.com", {"ROLLOUT_SMTP_USER": "x"}, "ROLLOUT_SMTP_PASSWORD unset"),
        ("smtp://mail.example.com", CREDS, "credentials go only over TLS"),
        ("smtp://10.0.0.5?insecure_auth=loopback", CREDS, "10.0.0.5 is not a loopback"),
        ("smtp://127.0.0.1?insecure_auth=yes", CREDS, "insecure_auth takes only 'loopback'"),
        ("smtps://127.0.0.1?insecure_auth=loopback", CREDS, "applies only to smtp://"),
        ("maildir:", {}, "needs a path"),
        ("maildir:/x?fsync=maybe", {}, "fsync must be true or false"),
    ],
)
def test_bad_urls_are_refused_in_one_line(url: str, env: dict[str, str], says: str) -> None:
    with pytest.raises(TransportConfigError) as refused:
        open_transport(url, env=env)
    text = str(refused.value)
    assert says in text
    assert "\n" not in text
    assert "s3cret" not in text and "s3c/ret" not in text


def test_password_stays_out_of_repr_and_description() -> None:
    transport = open_transport("smtp+starttls://mail.example.com:587", env=CREDS)
    assert isinstance(transport, SmtpTransport)
    assert transport.password == "s3cret-Pa55"
    shown = " ".join([repr(transport), str(transport), transport.description])
    shown += repr(transport.connection())
    assert "s3cret" not in shown
    assert transport.description == "smtp+starttls://mail.example.com:587 (STARTTLS, AUTH)"
    assert "mailer" not in shown  # the user name is personal too: never in a log line


# --- AUTH and TLS -------------------------------------------------------------------------


def test_login_with_credentials_from_the_environment() -> None:
    with serve(credentials=("mailer", "s3cret-Pa55")) as server:
        url = f"{server.url}?insecure_auth=loopback"
        [reply] = send(open_transport(url, env=CREDS), ("a@example.org", message()))
        assert not isinstance(reply, DeliveryError)
        [got] = server.received
    assert got.auth_user == "mailer"


@pytest.mark.parametrize(
    ("env", "code", "step"),
    [
        ({**CREDS, "ROLLOUT_SMTP_PASSWORD": "wrong"}, 535, "AUTH"),  # bad password
        ({}, 530, "MAIL FROM"),  # no credentials for a server that wants them
    ],
)
def test_refused_login_blocks_the_campaign(env: dict[str, str], code: int, step: str) -> None:
    with serve(credentials=("mailer", "s3cret-Pa55")) as server:
        url = f"{server.url}?insecure_auth=loopback" if env else server.url
        [error] = send(open_transport(url, env=env), ("a@example.org", message()))
        assert server.received == []
    assert isinstance(error, CampaignBlocked)
    assert (error.code, f"(at {step}") == (code, f"(at {step}")
    assert "wrong" not in str(error)


def test_no_password_goes_out_in_plaintext() -> None:
    # A plaintext relay that offers AUTH: without the explicit loopback opt-in nothing is sent,
    # not even a connection is made (the refusal comes from reading the URL).
    with serve(credentials=("mailer", "s3cret-Pa55")) as server:
        with pytest.raises(TransportConfigError, match="credentials go only over TLS"):
            open_transport(server.url, env=CREDS)
        assert server.sessions == 0


def test_starttls_required_but_not_offered_is_refused(server: SmtpTestServer) -> None:
    transport = open_transport(f"smtp+starttls://127.0.0.1:{server.port}", env={})
    [error] = send(transport, ("a@example.org", message()))
    assert isinstance(error, CampaignBlocked)
    assert "does not offer STARTTLS; refusing to send in plaintext" in str(error)
    assert server.received == []


def test_starttls_with_a_private_ca(tls: tuple[Path, ssl.SSLContext]) -> None:
    cafile, context = tls
    with serve(starttls=context, credentials=("mailer", "s3cret-Pa55")) as server:
        url = f"smtp+starttls://127.0.0.1:{server.port}?cafile={cafile}"
        [reply] = send(open_transport(url, env=CREDS), ("a@example.org", message()))
        assert not isinstance(reply, DeliveryError), reply
        [got] = server.received
    assert got.tls and got.auth_user == "mailer"


def test_untrusted_certificate_blocks_the_campaign(tls: tuple[Path, ssl.SSLContext]) -> None:
    _, context = tls
    with serve(starttls=context) as server:
        url = f"smtp+starttls://127.0.0.1:{server.port}"
        [error] = send(open_transport(url, env={}), ("a@example.org", message()))
        assert server.received == []
    assert isinstance(error, CampaignBlocked)
    assert "TLS failed" in str(error) and "CERTIFICATE_VERIFY_FAILED" in str(error)


def test_implicit_tls(tls: tuple[Path, ssl.SSLContext]) -> None:
    cafile, context = tls
    with serve(implicit_tls=context) as server:
        url = f"smtps://127.0.0.1:{server.port}?cafile={cafile}&timeout=5"
        [reply] = send(open_transport(url, env={}), ("a@example.org", message()))
        assert not isinstance(reply, DeliveryError), reply
        assert server.received[0].tls


# --- how failures are sorted ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (lost_reply(), "connection lost during DATA"),
        (slow_reply(5.0), "no reply during DATA"),
        (garbled_reply(), "unreadable reply to DATA"),
    ],
)
def test_silence_after_the_message_went_out_may_mean_delivered(
    server: SmtpTestServer, fault: Fault, says: str
) -> None:
    # The server kept the message each time; the client cannot know, and must say so.
    server.set_faults(fault)
    transport = open_transport(f"{server.url}?timeout=0.5", env={})
    error, _ = send(transport, ("a@example.org", message(1)), ("b@example.org", message(2)))
    assert isinstance(error, TransientError) and error.maybe_delivered, error
    assert says in str(error)
    assert [r.message_id for r in server.received][:1] == ["<m1.legi-pin@example.org>"]


BAD = "bad@example.org"


@pytest.mark.parametrize(
    ("fault", "kind", "code", "maybe_delivered"),
    [
        (tempfail([BAD]), TransientError, 451, False),
        (reject([BAD]), PermanentError, 550, False),
        (
            reject([BAD], at="DATA", reply="554 5.7.1 Message rejected as spam"),
            PermanentError,
            554,
            False,
        ),
        (reject(at="MAIL", reply="550 5.7.1 Sender not allowed"), CampaignBlocked, 550, False),
        (
            tempfail(at="MAIL", times=1, reply="452 4.3.1 Out of storage"),
            TransientError,
            452,
            False,
        ),
        (disconnect([BAD]), TransientError, 421, False),
        (drop([BAD]), TransientError, None, True),
        (drop([BAD], at="RCPT"), TransientError, None, False),
    ],
)
def test_failures_are_sorted_and_the_connection_goes_on(
    server: SmtpTestServer,
    fault: Fault,
    kind: type[DeliveryError],
    code: int | None,
    maybe_delivered: bool,
) -> None:
    server.set_faults(fault)
    transport = open_transport(server.url, env={})
    error, after = send(transport, (BAD, message(1)), ("good@example.org", message(2)))
    assert type(error) is kind
    assert isinstance(error, DeliveryError)
    assert (error.code, error.maybe_delivered) == (code, maybe_delivered)
    if code is not None:  # the server's own words are kept
        assert fault.reply is not None and error.reason.startswith(fault.reply)
    if kind is not CampaignBlocked:  # the same connection (or a new one) carries the next
        assert not isinstance(after, DeliveryError), after
        assert [r.rcpt_tos for r in server.received] == [("good@example.org",)]


def test_reconnects_after_421(server: SmtpTestServer) -> None:
    server.set_faults(disconnect(every=2))
    items = [(f"r{n}@example.org", message(n)) for n in range(1, 6)]
    results = send(open_transport(server.url, env={}), *items)
    assert [getattr(r, "code", 250) for r in results] == [250, 421, 250, 421, 250]
    assert server.sessions == 3


def test_refused_connection_is_a_connection_failure() -> None:
    with serve() as gone:
        port = gone.port
    [error] = send(
        open_transport(f"smtp://127.0.0.1:{port}?timeout=2", env={}), ("a@x.org", message())
    )
    assert isinstance(error, ConnectionFailed)
    assert "cannot connect to smtp://127.0.0.1" in str(error)


def test_unsendable_address_fails_only_that_message(server: SmtpTestServer) -> None:
    transport = open_transport(server.url, env={})
    bad, utf8 = send(transport, ("a@x.org>\r\nRSET", message(1)), ("jürgen@bäcker.de", message(2)))
    assert isinstance(bad, PermanentError) and "cannot send to" in str(bad)
    assert not isinstance(utf8, DeliveryError)  # sent with SMTPUTF8
    assert [r.rcpt_tos for r in server.received] == [("jürgen@bäcker.de",)]


# --- Maildir ------------------------------------------------------------------------------


def test_maildir_writes_one_file_per_message_id(tmp_path: Path) -> None:
    transport = open_transport(f"maildir:{tmp_path}/outbox", env={})
    first = message(1, "<2026/congstar/1@example.org>")
    send(transport, ("r1@example.org", first), ("r2@example.org", message(2)))
    send(transport, ("r1@example.org", first))  # delivered again: replaces, no duplicate
    files = sorted((tmp_path / "outbox" / "new").iterdir())
    assert [f.name for f in files] == ["2026%2Fcongstar%2F1@example.org", "m2.legi-pin@example.org"]
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["Return-Path"] == "<service@example.org>"
    assert parsed["Delivered-To"] == "r1@example.org"
    assert parsed["Message-ID"] == "<2026/congstar/1@example.org>"
    assert b"\r\n" not in files[0].read_bytes()


def test_maildir_names() -> None:
    assert maildir_name(message(1, "<x:y/z@example.org>")) == "x%3Ay%2Fz@example.org"
    assert maildir_name("Message-ID: <ä@example.org>\r\n".encode()) == "%C3%A4@example.org"
    data = b"Subject: no id\r\n\r\nMessage-ID: <in-the-body@example.org>\r\n"  # not a header
    assert maildir_name(data) == maildir_name(data)
    assert maildir_name(data).startswith("sha256-")


def test_server_runs_as_a_sink_process() -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parents[1] / "tools" / "smtp_server.py"),
            "--delay-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        transport = open_transport(f"smtp://127.0.0.1:{port}", env={})
        items = [(f"r{n}@example.org", message(n)) for n in range(5)]
        assert all(not isinstance(r, DeliveryError) for r in send(transport, *items, items[0]))
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=10)
    summary = json.loads(out)
    assert (summary["accepted"], summary["unique_message_ids"], summary["sessions"]) == (6, 5, 1)


def test_unwritable_maildir_blocks(tmp_path: Path) -> None:
    (tmp_path / "outbox").write_text("a file where the folder should be")
    [error] = send(open_transport(f"maildir:{tmp_path}/outbox", env={}), ("r@x.org", message()))
    assert isinstance(error, CampaignBlocked)
