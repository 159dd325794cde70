"""A real SMTP server for tests and benchmarks: aiosmtpd on 127.0.0.1 with fault injection.

In a test (the server runs its own event loop in a thread):

    with SmtpTestServer(faults=[tempfail(recipients={"a@example.org"}, times=2)]) as server:
        ...send to server.url...
    server.received      # what was accepted, in order: envelope, bytes, Message-ID, time, session

Faults are rules matched at MAIL, RCPT or DATA; `server.set_faults(...)` swaps them at any time.
The helpers below build the usual ones: `tempfail` (451), `reject` (550), `disconnect` (421 and
close), `drop` (close without a reply, mid-DATA), `lost_reply` (store, then close: the
client cannot know that the message was accepted), `slow_reply` (store, answer after a delay)
and `garbled_reply` (store, answer with a line that is no reply).

In its own process (benchmarks), as a sink that counts:

    python tools/smtp_server.py --port 0 --delay-ms 20
    # prints the port on the first line; on SIGTERM/SIGINT prints a JSON summary and exits
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import itertools
import json
import re
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["MAIL", "RCPT", "DATA"]
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]+>)", re.I | re.M)


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None
    accepted_at: float  # time.monotonic() when stored, i.e. just before the 250
    session: int  # connection number, from 1
    tls: bool
    auth_user: str | None


@dataclass(frozen=True)
class Fault:
    """Answer `reply` at stage `at` instead of accepting.

    reply None closes the connection without any answer. close=True closes it after the reply.
    store=True (DATA only) keeps the message first. Only for `recipients` if given; only the
    first `times` matches (counted per recipient when recipients are given); only every
    `every`-th match.
    """

    at: Stage
    reply: str | None
    close: bool = False
    store: bool = False
    recipients: frozenset[str] | None = None
    times: int | None = None
    every: int = 1
    delay: float = 0.0  # seconds before the reply (past the client's timeout: a lost reply)


def tempfail(
    recipients: Iterable[str] | None = None,
    *,
    times: int | None = None,
    every: int = 1,
    at: Stage = "RCPT",
    reply: str = "451 4.7.1 Greylisted, please try again later",
) -> Fault:
    return Fault(at, reply, recipients=_set(recipients), times=times, every=every)


def reject(
    recipients: Iterable[str] | None = None,
    *,
    at: Stage = "RCPT",
    reply: str = "550 5.1.1 Mailbox unavailable",
    times: int | None = None,
) -> Fault:
    return Fault(at, reply, recipients=_set(recipients), times=times)


def disconnect(
    recipients: Iterable[str] | None = None,
    *,
    at: Stage = "DATA",
    times: int | None = None,
    every: int = 1,
    reply: str = "421 4.3.2 Service shutting down, closing transmission channel",
) -> Fault:
    return Fault(at, reply, close=True, recipients=_set(recipients), times=times, every=every)


def drop(
    recipients: Iterable[str] | None = None,
    *,
    at: Stage = "DATA",
    times: int | None = None,
    every: int = 1,
) -> Fault:
    """Close the connection without a reply; at DATA the message is not kept."""
    return Fault(at, None, recipients=_set(recipients), times=times, every=every)


def lost_reply(
    recipients: Iterable[str] | None = None, *, times: int | None = None, every: int = 1
) -> Fault:
    """Keep the message, then close without the 250: the client must assume it failed."""
    return Fault("DATA", None, store=True, recipients=_set(recipients), times=times, every=every)


def slow_reply(
    seconds: float,
    recipients: Iterable[str] | None = None,
    *,
    times: int | None = None,
    every: int = 1,
) -> Fault:
    """Keep the message, then answer 250 only after `seconds`: slower than a client's timeout."""
    return Fault(
        "DATA",
        "250 2.0.0 OK, at last",
        store=True,
        delay=seconds,
        recipients=_set(recipients),
        times=times,
        every=every,
    )


def garbled_reply(recipients: Iterable[str] | None = None, *, times: int | None = None) -> Fault:
    """Keep the message, then answer with a line that is no SMTP reply."""
    return Fault("DATA", "OK thanks", store=True, recipients=_set(recipients), times=times)


def _set(recipients: Iterable[str] | None) -> frozenset[str] | None:
    return None if recipients is None else frozenset(recipients)


class SmtpTestServer:
    """aiosmtpd in a thread. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Iterable[Fault] = (),
        delay: float = 0.0,
        credentials: tuple[str, str] | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        record: bool = True,
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        self.host = host
        self.delay = delay  # seconds before answering DATA: a slow relay
        self.credentials = credentials
        self.record = record  # False: count only (a sink for long benchmarks)
        self.on_receive = on_receive  # called in the server thread, before the 250
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)
        self._matches: dict[tuple[int, str | None], int] = {}
        self._received: list[Received] = []
        self._message_ids: set[str] = set()
        self.accepted = 0
        self._sessions = itertools.count(1)
        self.sessions = 0
        kwargs: dict[str, Any] = {
            "server_hostname": "smtp.test",  # else aiosmtpd resolves the FQDN per connection
            "data_size_limit": None,
        }
        if starttls is not None:
            kwargs["tls_context"] = starttls
        if credentials is not None:
            # AUTH over plain loopback; the "530 unless authenticated" check is in handle_MAIL
            # (aiosmtpd's own auth_required would warn about the missing TLS on every session).
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self._controller = _Controller(
            self, self, hostname=host, port=port, ssl_context=implicit_tls, **kwargs
        )

    # --- life cycle ---

    def start(self) -> SmtpTestServer:
        self._controller.start()
        with self._lock:  # forget the controller's own start-up probe connection
            self._sessions = itertools.count(1)
            self.sessions = 0
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    # --- what happened ---

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def unique_message_ids(self) -> int:
        with self._lock:
            return len(self._message_ids)

    def set_faults(self, *faults: Fault) -> None:
        with self._lock:
            self._faults = list(faults)
            self._matches.clear()

    # --- aiosmtpd handler hooks (server thread) ---

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        fault = self._match("MAIL", [None])
        if fault is not None:
            return await self._apply(fault, server, session, envelope)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = self._match("RCPT", [address])
        if fault is not None:
            return await self._apply(fault, server, session, envelope)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        fault = self._match("DATA", envelope.rcpt_tos)
        if fault is not None:
            return await self._apply(fault, server, session, envelope)
        number = self._store(server, session, envelope)
        return f"250 2.0.0 OK queued as T{number}"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.credentials == (
            data.login.decode(),
            data.password.decode(),
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    # --- internals ---

    def _match(self, stage: Stage, recipients: list[str] | list[None]) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.at != stage:
                    continue
                wanted = [
                    r for r in recipients if fault.recipients is None or r in fault.recipients
                ]
                if not wanted:
                    continue
                key = (index, wanted[0] if fault.recipients is not None else None)
                count = self._matches[key] = self._matches.get(key, 0) + 1
                if (fault.times is None or count <= fault.times) and count % fault.every == 0:
                    return fault
        return None

    async def _apply(self, fault: Fault, server: SMTP, session: Session, envelope: Envelope) -> str:
        if fault.store:
            self._store(server, session, envelope)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        transport = server.transport
        assert transport is not None
        if fault.reply is None:
            transport.close()
            # connection_lost() cancels this handler: the client never sees a reply.
            await asyncio.sleep(3600)
            return "451 4.3.0 unreachable"
        if fault.close:
            asyncio.get_running_loop().call_soon(transport.close)  # after the reply is written
        return fault.reply

    def _store(self, server: SMTP, session: Session, envelope: Envelope) -> int:
        data = envelope.original_content or b""
        found = _MESSAGE_ID.search(data)
        message_id = found.group(1).decode() if found else None
        auth = session.auth_data
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data if self.record else b"",
            message_id=message_id,
            accepted_at=time.monotonic(),
            session=getattr(server, "session_number", 0),
            tls=server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None,
            auth_user=auth.login.decode() if isinstance(auth, LoginPassword) else None,
        )
        with self._lock:
            self.accepted += 1
            if message_id is not None:
                self._message_ids.add(message_id)
            if self.record:
                self._received.append(received)
            number = self.accepted
        if self.on_receive is not None:
            self.on_receive(received)
        return number

    def _new_session(self) -> int:
        with self._lock:
            self.sessions += 1
            return next(self._sessions)


class _Controller(Controller):
    """Numbers each connection and supports port 0 (aiosmtpd 1.4 would probe port 0)."""

    def __init__(self, owner: SmtpTestServer, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def factory(self) -> SMTP:
        smtp = SMTP(self.handler, **self.SMTP_kwargs)
        smtp.session_number = self._owner._new_session()  # type: ignore[attr-defined]
        return smtp

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@contextmanager
def serve(**kwargs: Any) -> Iterator[SmtpTestServer]:
    """For fixtures: `with serve(delay=0.02) as server: yield server`."""
    with SmtpTestServer(**kwargs) as server:
        yield server


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, ssl.SSLContext]:
    """A throw-away certificate for `host`: (CA file for the client, server's SSLContext)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SMTP sink with optional faults")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="before answering DATA")
    parser.add_argument("--tempfail-every", type=int, default=0, help="451 every n-th DATA")
    parser.add_argument("--drop-every", type=int, default=0, help="drop every n-th DATA")
    parser.add_argument("--lost-reply-every", type=int, default=0, help="store, then drop")
    parser.add_argument("--record", action="store_true", help="keep messages (memory grows)")
    args = parser.parse_args(argv)
    faults = []
    if args.tempfail_every:
        faults.append(tempfail(every=args.tempfail_every, at="DATA"))
    if args.drop_every:
        faults.append(drop(every=args.drop_every))
    if args.lost_reply_every:
        faults.append(lost_reply(every=args.lost_reply_every))
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    server = SmtpTestServer(
        host=args.host,
        port=args.port,
        delay=args.delay_ms / 1000,
        faults=faults,
        record=args.record,
    )
    with server:
        print(server.port, flush=True)
        started = time.monotonic()
        while not done.wait(0.5):
            pass
        summary = {
            "accepted": server.accepted,
            "unique_message_ids": server.unique_message_ids,
            "sessions": server.sessions,
            "seconds": round(time.monotonic() - started, 3),
        }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
