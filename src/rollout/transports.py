"""Where e-mails go: an SMTP server (plain, STARTTLS, implicit TLS) or a local Maildir.

A transport is chosen by URL (`open_transport`); it hands out connections, each carrying one
message at a time over one persistent session. Failures are sorted into three kinds, because
the delivery loop treats them differently:

- `TransientError`: try again later (4xx, timeouts, dropped connections, refused connects),
  unless `maybe_delivered`: silence once DATA was sent, which the delivery loop records as
  unknown instead;
- `PermanentError`: this message will never be accepted (5xx for the recipient or content);
- `CampaignBlocked`: nothing will be accepted (5xx on greeting/EHLO/AUTH/MAIL FROM, TLS
  failures, STARTTLS missing): stop and leave the rest pending instead of failing everyone.

Credentials come only from ROLLOUT_SMTP_USER / ROLLOUT_SMTP_PASSWORD, never from the URL, so
they stay out of command lines, logs and Prefect parameters.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import aiosmtplib

ENV_USER = "ROLLOUT_SMTP_USER"
ENV_PASSWORD = "ROLLOUT_SMTP_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
ENV_TRANSPORT = "ROLLOUT_TRANSPORT"

Security = Literal["plain", "starttls", "tls"]
_E = TypeVar("_E", bound=BaseException)
_SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
_USAGE = "use maildir:PATH, smtp://HOST[:PORT], smtp+starttls://HOST[:PORT] or smtps://HOST[:PORT]"


class TransportConfigError(ValueError):
    """The transport URL or its environment is unusable; the message is one line."""


class DeliveryError(Exception):
    """A message was not accepted. `code` is the SMTP reply code when the server gave one."""

    def __init__(self, code: int | None, text: str, *, maybe_delivered: bool = False) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = " ".join(text.split())  # multi-line replies become one log line
        # True when the server went silent (dropped, timed out, unreadable) once the DATA
        # command was sent: it may hold the message, so a retry could deliver it twice.
        self.maybe_delivered = maybe_delivered

    @property
    def reason(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text

    def __str__(self) -> str:
        return self.reason


class TransientError(DeliveryError):
    """Worth another try later: 4xx, timeout, dropped or refused connection."""


class ConnectionFailed(TransientError):
    """No session could be opened (refused, timed out, 4xx greeting/EHLO/AUTH).

    Says nothing about any message: the delivery loop does not count it as an attempt.
    """


class PermanentError(DeliveryError):
    """This message will not be accepted (5xx on RCPT or DATA, unsendable address)."""


class CampaignBlocked(DeliveryError):
    """The server refuses us as a sender, so every further message would fail too."""


class Reply(NamedTuple):
    """How the destination acknowledged a message (e.g. 250 and the relay's queue id)."""

    code: int | None
    text: str

    @property
    def reason(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text


class Connection(Protocol):
    """One session with the destination, carrying one message at a time."""

    async def open(self) -> None:
        """Connect unless connected; raises ConnectionFailed or CampaignBlocked."""

    async def send(self, sender: str, recipient: str, data: bytes) -> Reply:
        """Deliver one message, (re)connecting first if needed; raises DeliveryError kinds."""

    async def close(self) -> None:
        """Politely end the session; never raises. `open`/`send` may reconnect later."""


class Transport(Protocol):
    @property
    def description(self) -> str:
        """Where mail goes, safe for logs (never a password)."""

    def connection(self) -> Connection:
        """A new connection, not yet opened."""


def open_transport(url: str, *, env: Mapping[str, str] = os.environ) -> Transport:
    """Parse a transport URL; credentials come from `env`. Raises TransportConfigError."""
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon:
        raise TransportConfigError(f"transport {_redact(url)!r} has no scheme: {_USAGE}")
    if "{" in url or "}" in url:  # a placeholder left over, or a typo: not a path or a host
        raise TransportConfigError(f"transport {_redact(url)!r}: braces are not allowed")
    if scheme == "maildir":
        return _maildir_from_url(rest)
    if scheme in _SCHEMES:
        return _smtp_from_url(url, env)
    raise TransportConfigError(f"unknown transport scheme {scheme!r}: {_USAGE}")


# --- SMTP -----------------------------------------------------------------------------------


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


_URL_SCHEME = {security: scheme for scheme, (security, _) in _SCHEMES.items()}
_SMTP_PARAMS = ("timeout", "cafile", "helo", "insecure_auth")
# Every transport URL option, for --help and the README.
URL_OPTIONS = {
    "timeout": "seconds to wait for each SMTP reply (default 60)",
    "cafile": "PEM file of a private CA that signed the relay's certificate",
    "helo": "our name in EHLO (default: this machine's FQDN)",
    "insecure_auth": "'loopback': allow AUTH over plain smtp:// to a relay on 127.0.0.0/8 or ::1",
    "fsync": "maildir only: 'false' skips the flush per message (default true)",
}


def _smtp_from_url(url: str, env: Mapping[str, str]) -> SmtpTransport:
    if "@" in url:  # anywhere: a password may itself hold "/", "?" or "@"
        raise TransportConfigError(
            f"credentials in the transport URL are not accepted ({_redact(url)}): "
            f"set {ENV_USER} and {ENV_PASSWORD} instead"
        )
    parts = urlsplit(url)
    security, default_port = _SCHEMES[parts.scheme.lower()]
    try:
        port = parts.port or default_port
    except ValueError:
        raise TransportConfigError(f"invalid port in transport {url!r}") from None
    if not parts.hostname:
        raise TransportConfigError(f"transport {url!r} names no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise TransportConfigError(f"transport {url!r} must not have a path or fragment")
    params = _query(url, parts.query, _SMTP_PARAMS)
    username, password = _credentials(env)
    if username and security == "plain":
        _allow_plaintext_auth(url, parts.hostname, params.get("insecure_auth"))
    elif "insecure_auth" in params:
        raise TransportConfigError("insecure_auth applies only to smtp:// with credentials set")
    return SmtpTransport(
        host=parts.hostname,
        port=port,
        security=security,
        timeout=_positive_float("timeout", params.get("timeout", "60")),
        username=username,
        password=password,
        cafile=_existing_file(params["cafile"]) if "cafile" in params else None,
        helo=_hostname(params["helo"]) if "helo" in params else None,
    )


def _allow_plaintext_auth(url: str, host: str, insecure_auth: str | None) -> None:
    """Credentials travel only over TLS, except to a relay on this machine when asked."""
    if insecure_auth is None:
        raise TransportConfigError(
            f"{ENV_USER} is set but {_redact(url)} is plaintext: credentials go only over TLS "
            "(use smtp+starttls:// or smtps://; for a relay on this machine add "
            "?insecure_auth=loopback)"
        )
    if insecure_auth != "loopback":
        raise TransportConfigError(f"insecure_auth takes only 'loopback', not {insecure_auth!r}")
    if not _is_loopback(host):
        raise TransportConfigError(
            f"insecure_auth=loopback, but {host} is not a loopback address: credentials go "
            "only over TLS"
        )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credentials(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    username = env.get(ENV_USER) or None
    password = env.get(ENV_PASSWORD) or None
    if bool(username) != bool(password):
        missing = ENV_PASSWORD if username else ENV_USER
        raise TransportConfigError(f"{ENV_USER} and {ENV_PASSWORD} go together: {missing} unset")
    return username, password


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

    async def send(self, sender: str, recipient: str, data: bytes) -> Reply:
        await self.open()
        phase = "MAIL FROM"
        try:
            options, encoding = self._mail_options(sender, recipient, data)
            await self._smtp.mail(sender, options=options, encoding=encoding)
            phase = "RCPT TO"
            await self._smtp.rcpt(recipient, encoding=encoding)
            phase = "DATA"
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


# --- Maildir --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaildirTransport:
    """Writes each message to `path/new/` (the embedded default: no server needed).

    The file name derives from the Message-ID, so delivering a message again replaces its file
    instead of adding a second one. `fsync` makes "sent" mean "on disk", as a server's 250 does.
    """

    path: Path
    fsync: bool = True

    @property
    def description(self) -> str:
        return f"maildir:{self.path}"

    def connection(self) -> MaildirConnection:
        return MaildirConnection(self)


def _maildir_from_url(rest: str) -> MaildirTransport:
    raw, _, query = rest.partition("?")
    if raw.startswith("//"):  # maildir:///abs/path
        raw = raw[2:]
    if not raw:
        raise TransportConfigError(f"maildir transport needs a path: {_USAGE}")
    params = _query(f"maildir:{rest}", query, ("fsync",))
    fsync = params.get("fsync", "1").lower()
    if fsync not in ("0", "1", "false", "true", "no", "yes"):
        raise TransportConfigError(f"maildir fsync must be true or false, not {fsync!r}")
    return MaildirTransport(Path(raw).expanduser(), fsync=fsync in ("1", "true", "yes"))


class MaildirConnection:
    """Writes run in a worker thread: with fsync each costs about a disk flush."""

    def __init__(self, transport: MaildirTransport) -> None:
        self._transport = transport
        self._ready = False

    async def open(self) -> None:
        if not self._ready:
            try:
                await asyncio.to_thread(self._make_dirs)
            except OSError as exc:
                raise self._blocked(exc) from exc
            self._ready = True

    async def send(self, sender: str, recipient: str, data: bytes) -> Reply:
        await self.open()
        try:
            name = await asyncio.to_thread(self._write, sender, recipient, data)
        except OSError as exc:
            raise self._blocked(exc) from exc
        return Reply(None, f"written to {self._transport.path / 'new' / name}")

    async def close(self) -> None:
        self._ready = False

    def _blocked(self, exc: OSError) -> CampaignBlocked:
        # Disk full, permissions, a file where the folder should be: no message will fare better.
        return CampaignBlocked(None, f"{self._transport.description}: {exc}")

    def _make_dirs(self) -> None:
        for sub in ("tmp", "new", "cur"):
            (self._transport.path / sub).mkdir(parents=True, exist_ok=True)

    def _write(self, sender: str, recipient: str, data: bytes) -> str:
        root = self._transport.path
        name = maildir_name(data)
        tmp = root / "tmp" / f"{name}.{os.getpid()}.{secrets.token_hex(4)}"
        # Maildir holds LF line endings; the envelope goes in the headers an MDA would add.
        envelope = f"Return-Path: <{sender}>\nDelivered-To: {recipient}\n".encode()
        with tmp.open("wb") as f:
            f.write(envelope + data.replace(b"\r\n", b"\n"))
            if self._transport.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, root / "new" / name)  # atomic; replaces an earlier copy
        return name


_MESSAGE_ID = re.compile(
    rb"^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE
)


def maildir_name(data: bytes) -> str:
    """A file name derived from the Message-ID (or the content, lacking one): stable per message.

    Percent-encoding keeps it readable and one-to-one; "/" and ":" (Maildir's flag separator)
    cannot occur. Very long IDs fall back to a hash to stay under the 255-byte name limit.
    """
    header_end = data.find(b"\r\n\r\n")
    if header_end < 0:
        header_end = data.find(b"\n\n")
    found = _MESSAGE_ID.search(data, 0, header_end if header_end >= 0 else len(data))
    if found is None:
        return "sha256-" + hashlib.sha256(data).hexdigest()
    name = quote(found.group(1)[1:-1], safe="@._-+=")  # bytes in: one-to-one even if not ASCII
    if len(name) > 200 or name.startswith("."):
        return "msgid-" + hashlib.sha256(found.group(1)).hexdigest()
    return name


# --- URL helpers ----------------------------------------------------------------------------


def _query(url: str, query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise TransportConfigError(f"malformed query in transport {_redact(url)!r}") from None
    params = dict(pairs)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TransportConfigError(
            f"unknown transport option {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    return params


def _positive_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise TransportConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    return number


def _existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise TransportConfigError(f"cafile {value!r} is not a readable file")
    return value


def _hostname(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]", value):
        raise TransportConfigError(f"helo must be a host name or [address], not {value!r}")
    return value


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redact(url: str) -> str:
    """The URL with any userinfo replaced, so an error message never repeats a password."""
    return re.sub(r"//.*@", "//***@", url, flags=re.DOTALL)
