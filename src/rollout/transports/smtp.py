"""SMTP: plain, STARTTLS or implicit TLS, one persistent aiosmtplib session per connection."""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, TypeVar

import aiosmtplib

from rollout.transports.kinds import (
    CampaignBlocked,
    ConnectionFailed,
    DeliveryError,
    PermanentError,
    Reply,
    TransientError,
)

Security = Literal["plain", "starttls", "tls"]
_E = TypeVar("_E", bound=BaseException)
SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
_URL_SCHEME = {security: scheme for scheme, (security, _) in SCHEMES.items()}


@dataclass(frozen=True)
class SmtpTransport:
    host: str
    port: int
    security: Security = "plain"
    timeout: float = 60.0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None  # a private CA for the relay's certificate
    helo: str | None = None  # our name in EHLO; default: this machine's FQDN

    @property
    def description(self) -> str:
        label = {"plain": "plain", "starttls": "STARTTLS", "tls": "TLS"}[self.security]
        auth = ", AUTH" if self.username else ""  # never the user name: it is personal too
        return f"{_URL_SCHEME[self.security]}://{_host_port(self.host, self.port)} ({label}{auth})"

    def connection(self) -> SmtpConnection:
        return SmtpConnection(self)

    @cached_property
    def tls_context(self) -> ssl.SSLContext | None:
        # Built once per transport, not per connection: loading the CA store costs milliseconds.
        if self.security == "plain":
            return None
        return ssl.create_default_context(cafile=self.cafile)

    def __str__(self) -> str:
        return self.description


class SmtpConnection:
    """One aiosmtplib session, reconnected lazily after the server drops it."""

    def __init__(self, transport: SmtpTransport) -> None:
        self._transport = transport
        # One client object for the connection's life: it keeps the resolved FQDN for EHLO.
        self._smtp = aiosmtplib.SMTP(
            hostname=transport.host,
            port=transport.port,
            use_tls=transport.security == "tls",
            start_tls=False,  # done by hand below, so a missing STARTTLS is refused
            tls_context=transport.tls_context,
            timeout=transport.timeout,
            local_hostname=transport.helo,
        )

    def __repr__(self) -> str:
        return f"<SmtpConnection {self._transport.description}>"

    async def open(self) -> None:
        if self._smtp.is_connected:
            return
        try:
            await self._smtp.connect()
            await self._handshake()
        except BaseException as exc:
            self._smtp.close()
            if isinstance(exc, Exception) and not isinstance(exc, DeliveryError):
                raise _connect_error(exc, self._transport.description) from exc
            raise

    async def _handshake(self) -> None:
        smtp, transport = self._smtp, self._transport
        await smtp.ehlo()
        if transport.security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise CampaignBlocked(
                    None,
                    f"{transport.description}: the server does not offer STARTTLS; refusing "
                    "to send in plaintext (use smtp:// only for a trusted relay)",
                )
            await smtp.starttls()
            await smtp.ehlo()  # RFC 3207: forget what was learnt before TLS
        if transport.username and transport.password:
            if not smtp.supports_extension("auth"):
                raise CampaignBlocked(None, f"{transport.description}: server offers no AUTH")
            await smtp.login(transport.username, transport.password)

    async def send(
        self, sender: str, recipient: str, data: bytes, ready: Awaitable[None] | None = None
    ) -> Reply:
        await self.open()
        phase, not_ready = "MAIL FROM", None
        try:
            options, encoding = self._mail_options(sender, recipient, data)
            await self._smtp.mail(sender, options=options, encoding=encoding)
            phase = "RCPT TO"
            await self._smtp.rcpt(recipient, encoding=encoding)
            phase = "DATA"
            not_ready = await _error_of(ready)
            if not_ready is None:
                response = await self._smtp.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            if phase == "DATA" and not 400 <= exc.code < 600:
                # Not a definite refusal (unreadable, or a success code other than 250): the
                # server may have taken the message.
                self._smtp.close()
                raise TransientError(
                    None, f"unreadable reply to DATA: {exc.message}", maybe_delivered=True
                ) from exc
            await self._after_refusal(exc.code)
            raise _reply_error(phase, exc.code, exc.message) from exc
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            # From the DATA command on, silence may hide an accepted message.
            self._smtp.close()
            what = "no reply" if isinstance(exc, aiosmtplib.SMTPTimeoutError) else "connection lost"
            raise TransientError(
                None, f"{what} during {phase}: {exc}", maybe_delivered=phase == "DATA"
            ) from exc
        except (ValueError, UnicodeError, aiosmtplib.SMTPNotSupported) as exc:
            await self._after_refusal(None)  # refused before anything was sent
            raise PermanentError(None, f"cannot send to {recipient!r}: {exc}") from exc
        if not_ready is not None:
            self._smtp.close()  # the envelope ends with the session: the server took nothing
            raise not_ready
        return Reply(response.code, " ".join(response.message.split()))

    def _mail_options(self, sender: str, recipient: str, data: bytes) -> tuple[list[str], str]:
        if _UNSAFE_ADDRESS.search(sender) or _UNSAFE_ADDRESS.search(recipient):
            # aiosmtplib would quietly send to the part it can parse: refuse instead.
            raise ValueError("the address holds whitespace or angle brackets")
        options = []
        encoding = "ascii"
        if not (sender.isascii() and recipient.isascii()):
            if not self._smtp.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported("the address needs SMTPUTF8; server lacks it")
            options.append("SMTPUTF8")
            encoding = "utf-8"
        if self._smtp.supports_extension("size"):
            options.append(f"SIZE={len(data)}")  # an estimate is allowed (RFC 1870)
        if not data.isascii() and self._smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        return options, encoding

    async def _after_refusal(self, code: int | None) -> None:
        # 421 means the server is closing; otherwise RSET so the session can carry the next one.
        if code == 421 or not self._smtp.is_connected:
            self._smtp.close()
            return
        try:
            await self._smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._smtp.close()

    async def close(self) -> None:
        if not self._smtp.is_connected:
            return
        try:
            await self._smtp.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self._smtp.close()


_UNSAFE_ADDRESS = re.compile(r"[\s<>]")


async def _error_of(ready: Awaitable[None] | None) -> Exception | None:
    """Await `ready`; its error is returned, not raised, so that no SMTP handler takes it."""
    try:
        if ready is not None:
            await ready
    except Exception as exc:
        return exc
    return None


def _reply_error(phase: str, code: int, text: str) -> DeliveryError:
    reason = f"{text} (at {phase})"
    if 400 <= code < 500:
        return TransientError(code, reason)
    if code >= 500 and phase == "MAIL FROM":
        return CampaignBlocked(code, reason)  # the sender is refused: so is every message
    if code >= 500:
        return PermanentError(code, reason)
    return TransientError(code, f"unexpected reply: {reason}")


def _connect_error(exc: Exception, where: str) -> DeliveryError:
    """Classify a failure while opening a session (connect, EHLO, STARTTLS, AUTH)."""
    tls = _find_cause(exc, ssl.SSLError)
    if tls is not None:
        return CampaignBlocked(None, f"{where}: TLS failed: {tls}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        step = _step_name(exc)
        if 400 <= exc.code < 500:
            return ConnectionFailed(exc.code, f"{exc.message} (at {step})")
        return CampaignBlocked(exc.code, f"{exc.message} (at {step}, {where})")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPServerDisconnected | OSError):
        return ConnectionFailed(None, f"cannot connect to {where}: {exc}")
    # Anything else (AUTH not offered, a refused STARTTLS upgrade, ...) will not heal by itself.
    return CampaignBlocked(None, f"{where}: {exc}")


def _step_name(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "AUTH"
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return "EHLO"
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return "greeting"
    return "session start"


def _find_cause(exc: BaseException, kind: type[_E]) -> _E | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
