"""Where e-mails go: an SMTP server (plain, STARTTLS, implicit TLS) or a local Maildir.

A transport is chosen by URL (`open_transport`, in `url`); it hands out connections, each
carrying one message at a time over one persistent session. `kinds` says how a message fared:
a `Reply`, or one of the failures the delivery loop treats differently. `smtp` and `maildir`
are the two transports.
"""

from rollout.transports.kinds import (
    CampaignBlocked,
    Connection,
    ConnectionFailed,
    DeliveryError,
    PermanentError,
    Reply,
    TransientError,
    Transport,
    TransportConfigError,
)
from rollout.transports.maildir import MaildirConnection, MaildirTransport, maildir_name
from rollout.transports.smtp import SmtpConnection, SmtpTransport
from rollout.transports.url import (
    ENV_PASSWORD,
    ENV_TRANSPORT,
    ENV_USER,
    URL_OPTIONS,
    open_transport,
)

__all__ = [
    "ENV_PASSWORD",
    "ENV_TRANSPORT",
    "ENV_USER",
    "URL_OPTIONS",
    "CampaignBlocked",
    "Connection",
    "ConnectionFailed",
    "DeliveryError",
    "MaildirConnection",
    "MaildirTransport",
    "PermanentError",
    "Reply",
    "SmtpConnection",
    "SmtpTransport",
    "TransientError",
    "Transport",
    "TransportConfigError",
    "maildir_name",
    "open_transport",
]
