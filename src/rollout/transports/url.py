"""Transport URLs: which transport, where, with which options; credentials from the environment.

Credentials come only from ROLLOUT_SMTP_USER / ROLLOUT_SMTP_PASSWORD, never from the URL, so
they stay out of command lines, logs and Prefect parameters, and they go only over TLS.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from rollout.transports.kinds import Transport, TransportConfigError
from rollout.transports.maildir import MaildirTransport
from rollout.transports.smtp import SCHEMES, SmtpTransport

ENV_USER = "ROLLOUT_SMTP_USER"
ENV_PASSWORD = "ROLLOUT_SMTP_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
ENV_TRANSPORT = "ROLLOUT_TRANSPORT"
_USAGE = "use maildir:PATH, smtp://HOST[:PORT], smtp+starttls://HOST[:PORT] or smtps://HOST[:PORT]"


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
    if scheme in SCHEMES:
        return _smtp_from_url(url, env)
    raise TransportConfigError(f"unknown transport scheme {scheme!r}: {_USAGE}")


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
    security, default_port = SCHEMES[parts.scheme.lower()]
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


def _redact(url: str) -> str:
    """The URL with any userinfo replaced, so an error message never repeats a password."""
    return re.sub(r"//.*@", "//***@", url, flags=re.DOTALL)
