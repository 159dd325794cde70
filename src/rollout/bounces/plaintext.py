"""Bounces written as prose: Exim, qmail (QSBMF), Sendmail V5, Postfix without DSN, Exchange,
Gmail, Yahoo, Mail.ru, GMX and the many systems that copy one of them.

They all say the same things in their own words: which addresses failed, each followed (or
preceded, on the same line) by the remote server's reply. So rather than one parser per
system, the bounce's own words (the text before the copy of the original) are cut into one
stretch per failed address: from the line that names it to the line that names the next.
Addresses that are not failed recipients (the sender, postmaster, MAILER-DAEMON, the bounce's
own From and To) are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ADDRESS = re.compile(
    r"(?<![\w.+=-])([\w.!#$%&'*+/=?^`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+)"
)
_SYSTEM = re.compile(  # mail systems' own addresses: failed recipients only if none else is
    r"^(mailer-daemon|postmaster|post_master|mail-daemon|mailerdaemon|abuse|noreply|no-reply|"
    r"bounces?|double-bounce|root|nobody|daemon)@",
    re.IGNORECASE,
)
_NOT_A_RECIPIENT_LABEL = re.compile(  # "From: x@y", "MAIL FROM:<x@y>", "Message-ID: <x@y>"
    r"\b(mail from|from|sender|reply-to|return-path|envelope-from|message-id|in-reply-to|"
    r"references)\s*[:=]\s*<?\s*$",
    re.IGNORECASE,
)
_ALIAS_LABEL = re.compile(  # Exim "(generated from x@y)", Postfix "(expanded from <x@y>)"
    r"\b(generated|expanded|forwarded|redirected) from\s*:?\s*<?\s*$", re.IGNORECASE
)
_DELAYED = re.compile(
    r"(warning: (message|mail) .{0,40}(still )?(undelivered|delayed|not yet delivered)"
    r"|has been delayed|(is|was) delayed|delivery (is |has been )?delayed|will (continue to )?"
    r"(retry|try)|will be retried|still (trying|queued)|no action is required|"
    r"do not need to resend|not yet been delivered|this is (only )?a warning)",
    re.IGNORECASE,
)
_BOUNCE_WORDS = re.compile(
    r"(could not be delivered|couldn't be delivered|undeliver|delivery (has )?failed|"
    r"failed permanently|permanent (error|failure|fatal)|wasn't able to deliver|"
    r"was not able to deliver|unable to deliver|did not reach|returned mail|"
    r"delivery status notification|mail delivery (failed|system|subsystem)|"
    r"non-?delivery|delivery (problem|failure|error)|transcript of session|"
    r"following address(es)? failed|rejected your message|failure notice|could not deliver|"
    r"message (was )?not delivered|nicht zugestellt|unzustellbar|не может быть доставлено|"
    r"не доставлено|was undeliverable|remote host said|requested action not taken|rcpt to)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Stretch:
    """One failed address and the words about it."""

    address: str
    words: str
    before: str = ""  # the lines right before a stand-alone address, where some put the reason


def looks_like_bounce_text(text: str) -> bool:
    return bool(_BOUNCE_WORDS.search(text))


def is_delay_warning(text: str) -> bool:
    return bool(_DELAYED.search(text))


def candidates(text: str, exclude: set[str]) -> list[str]:
    """Addresses the text names, in order, without those that cannot be failed recipients."""
    seen: list[str] = []
    for found in ADDRESS.finditer(text):
        lower = found.group(1).strip(".").lower()
        line_start = text.rfind("\n", 0, found.start()) + 1
        before = text[line_start : found.start()]
        if _ALIAS_LABEL.search(before):
            continue  # the alias of the address before: see aliases()
        if lower in exclude or _NOT_A_RECIPIENT_LABEL.search(before):
            exclude = exclude | {lower}  # a sender named anywhere is a sender everywhere
        elif lower not in seen:
            seen.append(lower)
    seen = [a for a in seen if a not in exclude]
    return [a for a in seen if not _SYSTEM.match(a)] or seen


def aliases(text: str, addresses: list[str]) -> dict[str, str]:
    """address -> the address it was generated or expanded from (an alias or forward: the
    one we sent to), as Exim ("generated from") and Postfix ("expanded from") say."""
    found: dict[str, str] = {}
    last: str | None = None
    for match in ADDRESS.finditer(text):
        lower = match.group(1).strip(".").lower()
        line_start = text.rfind("\n", 0, match.start()) + 1
        if _ALIAS_LABEL.search(text[line_start : match.start()]):
            if last is not None and last != lower:
                found.setdefault(last, lower)
        elif lower in addresses:
            last = lower
    return found


def stretches(text: str, addresses: list[str]) -> list[Stretch]:
    """The words about each address: from the first line naming it to the next line that
    names another one."""
    lines = text.replace("\r\n", "\n").split("\n")
    named: list[tuple[int, str]] = []  # (line, address) for every line naming an address
    for number, line in enumerate(lines):
        lower = line.lower()
        first = min(((lower.find(a), a) for a in addresses if a.lower() in lower), default=None)
        if first is not None:
            named.append((number, first[1]))
    out: list[Stretch] = []
    for address in addresses:
        start = next((n for n, a in named if a == address), None)
        if start is None:
            continue
        end = next((n for n, a in named if n > start and a != address), len(lines))
        words, before = "\n".join(lines[start:end][:25]), ""
        if start > 0 and not ADDRESS.sub("", lines[start]).strip(" <>:;,.\t"):
            # The address stands alone (Exim, Gmail, qmail): the reply follows it. Some
            # systems put the reason right before the address list instead.
            after = max((n + 1 for n, a in named if n < start and a != address), default=0)
            before = "\n".join(lines[max(after, start - 3) : start])
        out.append(Stretch(address, words, before))
    return out


def summary_line(text: str) -> str:
    """The server's reply in a stretch: its lines joined, blanks squeezed."""
    return " ".join(text.split())
