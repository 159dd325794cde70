"""The verdict on one failed recipient, by what the failure means rather than its first digit.

hard: the address is dead (unknown user or domain, moved, accepts no mail): X.1.1, X.1.2,
X.1.3, X.1.6, X.1.10, or words like "user unknown" with a 5xx reply or a generic 5.0.0/5.5.0.
Everything else that failed is soft: the address may well work, and `rollout resend` tries
again. A soft failure caused by our own side (our IP or domain blocked or blocklisted, our mail
taken for spam, SPF/DKIM/DMARC or reverse-DNS refusals, our sender address refused) is also a
`sender_problem`: mailing again will not help until someone fixes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rollout.bounces.plaintext import ADDRESS

DEAD = frozenset({"user_unknown", "host_unknown", "moved", "no_mail"})
SENDER_SIDE = frozenset({"blocked", "spam", "auth", "reputation", "sender_rejected"})


@dataclass(frozen=True)
class Verdict:
    category: str  # user_unknown, mailbox_full, blocked, ... (see _TEXTS)
    hard: bool

    @property
    def sender_problem(self) -> bool:
        return self.category in SENDER_SIDE


def _words(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


# First match wins: the more specific meanings come first.
_TEXTS: list[tuple[str, re.Pattern[str]]] = [
    (
        "sender_rejected",
        _words(
            r"after mail from",
            r"sender (address |domain )?(rejected|refused|denied|verify failed|unknown)",
            r"sender address .{0,40}(rejected|not found|does not exist|unknown)",
            r"(bad|invalid|unknown) sender",
            r"domain of sender address",
            r"envelope sender .{0,30}(rejected|invalid)",
        ),
    ),
    (
        "mailbox_full",
        _words(
            r"mail ?box (is |was )?(full|over ?quota)",
            r"(over|exceed\w*|reached) (the |his |her |their |its )?(\w+ )?(quota|storage)",
            r"quota (exceeded|full|violation)",
            r"\bover ?quota\b",
            r"(disk|storage|mailbox) (space |size )?(limit|full|exceeded|quota)",
            r"insufficient (disk |storage )?space",
            r"full mail ?box",
            r"mailfolder is full",
            r"too much mail",
            r"postfach (ist )?voll",
            r"no space left",
        ),
    ),
    (
        "auth",
        _words(
            r"\bspf\b",
            r"\bdkim\b",
            r"\bdmarc\b",
            r"sender policy framework",
            r"(not|un|fail\w*) ?authenticat",
            r"authentication (required|failed|failure)",
        ),
    ),
    (
        "reputation",
        _words(
            r"reputation",
            r"\bptr\b",
            r"reverse (dns|lookup|name)",
            r"\brdns\b",
            r"black ?list",
            r"block ?list",
            r"\b(dnsbl|rbl|spamhaus|spamcop|sorbs|barracudacentral|abuseat)\b",
            r"blocked (by|using)",
            r"client host .{0,60}(rejected|blocked|refused)",
            r"poor (ip )?reputation",
            r"dynamic (ip|address)",
            r"(my|our) (host ?)?name was rejected",
        ),
    ),
    (
        "spam",
        _words(r"spam", r"\bjunk\b", r"unsolicited", r"bulk (e-?)?mail", r"looks suspicious"),
    ),
    (
        "user_unknown",
        _words(
            r"(user|recipient|addressee|mailbox|address|account|alias|local part|local user)"
            r"( name)?( [<(\[]?address[>)\]]?)? (is )?"
            r"(unknown|not (found|known|recognized|recognised|exist|listed))",
            r"unknown (user|recipient|mailbox|address|alias|local.?part|account)",
            r"no such (user|mailbox|recipient|address|account|person|local user|alias)",
            r"(?<!may )(does ?n[o']t|doesn't|not) exist",
            r"(address|user|recipient|mailbox|account)\b.{0,30}(could ?n[o']t|could not|can ?not|"
            r"wasn't|was not) (be )?found",
            r"\bwas ?n[o']t found at\b",
            r"not listed in (the )?(\w+ )?(directory|address book|name)",
            r"invalid (final delivery )?user ?id",
            r"recipient address rejected: access denied",
            r"check (if|that|whether) (the )?address is correct",
            r"ディレクトリのリストにありません",
            r"no (mailbox|account) (here )?(by|with) that name",
            r"invalid (recipient|mailbox|address|user|e-?mail address)",
            r"(recipient|user|mailbox) (address )?(invalid|unavailable|not available)",
            r"bad destination mailbox",
            r"(doesn't|does not) have an? .{0,40}account",
            r"not (a )?(valid|known) (user|mailbox|recipient|address)",
            r"unrouteable address",
            r"undeliverable address",
            r"no mailbox",
            r"mailbox (not found|unknown|does not exist)",
            r"not our customer",
            r"address (unknown|not found)",
            r"unbekannt|existiert nicht",
            r"нет такого|не существует|не найден",
        ),
    ),
    (
        "host_unknown",
        _words(
            r"host (or domain name )?(unknown|not found)",
            r"host \S+ not found",
            r"unknown (host|domain)",
            r"domain (name )?(not found|unknown|does not exist)",
            r"no such domain",
            r"invalid domain(?! name)",
            r"name or service not known",
            r"unrouteable (mail )?domain",
            r"\bnxdomain\b",
            r"bad destination system",
            r"mx records point to non-existent",
            r"could ?n[o']t find any host",
        ),
    ),
    ("moved", _words(r"has moved", r"no longer (at|with|available|valid)", r"moved (away|to)")),
    (
        "no_mail",
        _words(
            r"does not accept (any )?mail",
            r"null mx",
            r"accepts no mail",
            r"no mx (or a )?records?",
        ),
    ),
    (
        "suspended",
        _words(
            r"(account|mailbox|user|address)( has been| is)? "
            r"(disabled|suspended|deactivated|inactive|locked|frozen|closed|expired|blocked)",
            r"(disabled|suspended|inactive|deactivated) (account|mailbox|user)",
            r"\b(is|has been) (disabled|deactivated|suspended)\b",
            r"not active",
        ),
    ),
    (
        "blocked",
        _words(
            r"\bblock(ed|ing)?\b",
            r"\bbanned\b",
            r"access denied",
            r"\brefused\b",
            r"your (ip|host|server|domain)",
            r"connection (rejected|denied|refused) ",
        ),
    ),
    (
        "too_big",
        _words(r"message (size|too (large|big)|length)", r"exceeds? .{0,30}size", r"size limit"),
    ),
    (
        "rate_limit",
        _words(r"too many", r"rate.?limit", r"throttl", r"exceeded .{0,40}limit", r"slow down"),
    ),
    (
        "relaying",
        _words(
            r"relay(ing)? (access )?(denied|not (permitted|allowed))",
            r"(unable|not permitted|not allowed) to relay",
            r"(we|i) do not relay",
        ),
    ),
    (
        "content",
        _words(
            r"content",
            r"virus",
            r"malware",
            r"attachment",
            r"header (error|syntax)",
            r"rfc ?(2?822|5322|5321)",
            r"mime",
            r"message body",
            r"8-?bit",
            r"not compliant",
            r"after end of data",
            r"filter",
        ),
    ),
    (
        "expired",
        _words(
            r"expired",
            r"retry time",
            r"timed? ?out",
            r"too long",
            r"giving up",
            r"gave up",
            r"could not be delivered (for|within)",
            r"for \d+ (days|hours)",
        ),
    ),
    (
        "network",
        _words(
            r"connection (refused|reset|lost|closed|failed|timed)",
            r"network",
            r"(host|server) .{0,20}unreachable",
            r"temporary (failure|problem|error)",
            r"dns",
            r"lookup",
            r"routing",
        ),
    ),
    (
        "policy",
        _words(
            r"polic", r"prohibit", r"not (permitted|allowed|authori[sz]ed)", r"denied", r"rejected"
        ),
    ),
    ("system", _words(r"system", r"internal", r"local error", r"i/o error", r"resources")),
]

_BY_STATUS = {  # subject.detail of an enhanced status code (RFC 3463)
    "1.1": "user_unknown",
    "1.2": "host_unknown",
    "1.3": "user_unknown",
    "1.6": "moved",
    "1.10": "no_mail",
    "1.7": "sender_rejected",
    "1.8": "sender_rejected",
    "2.1": "suspended",
    "2.2": "mailbox_full",
    "2.3": "too_big",
    "3.4": "too_big",
    "4.7": "expired",
    "7.1": "policy",
    "7.23": "auth",
    "7.24": "auth",
    "7.25": "reputation",
    "7.26": "auth",
    "7.27": "sender_rejected",
}
_BY_SUBJECT = {
    "1": "other",
    "2": "mailbox_full",
    "3": "system",
    "4": "network",
    "5": "system",
    "6": "content",
    "7": "policy",
}
_DEAD_STATUS = {"1.1", "1.2", "1.3", "1.6", "1.10"}
# The server took the recipient (RCPT) and refused the message (DATA) with a bare "user
# unknown": that is what filtering carriers say, and the address exists. Explicit words ("does
# not have an account", "invalid recipient": providers that check recipients at DATA) and an
# explicit X.1.x status are believed.
_AFTER_DATA = re.compile(
    r"(in reply to|after|at) (the )?(end of )?data\b|>>> data|data command", re.IGNORECASE
)
_BARE_UNKNOWN = re.compile(r"\b(user unknown|unknown user)\b", re.IGNORECASE)
_STRONG_TEXT = {"sender_rejected", "mailbox_full", "auth", "reputation", "spam", "suspended"}


_HOST = re.compile(r"\b[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*\.[a-z]{2,}\b", re.IGNORECASE)
_BLOCKLISTS = ("spamhaus", "spamcop", "sorbs", "barracudacentral", "abuseat", "dnsbl", "rbl")


def _without_hosts(text: str) -> str:
    """Host names and addresses say nothing of the failure ("mx.antispam.example.com: 550
    5.1.1 User unknown" is no spam verdict), except the names of blocklists."""

    def host(match: re.Match[str]) -> str:
        name = match.group(0).lower()
        return " ".join(b for b in _BLOCKLISTS if b in name) or "host"

    return _HOST.sub(host, ADDRESS.sub("address", text))


def judge(status: str | None, code: int | None, text: str, around: str = "") -> Verdict:
    """The verdict on a failure (not a delay) from its enhanced status, reply code and words;
    `around` is what else the bounce says about that recipient (e.g. the SMTP phase)."""
    text = _without_hosts(text)
    klass = (status or str(code or ""))[:1]
    subject_detail = status.split(".", 1)[1] if status and status.count(".") == 2 else ""
    by_text = next((name for name, pattern in _TEXTS if pattern.search(text)), None)
    if by_text in _STRONG_TEXT:
        return Verdict(str(by_text), False)
    if subject_detail in _DEAD_STATUS:
        return Verdict(by_text if by_text in DEAD else _BY_STATUS[subject_detail], True)
    after_data = _AFTER_DATA.search(text) or _AFTER_DATA.search(around)
    if by_text == "user_unknown" and after_data and _BARE_UNKNOWN.search(text):
        return Verdict("filtered", False)
    if by_text is not None:
        return Verdict(by_text, by_text in DEAD and klass != "4")
    by_status = _BY_STATUS.get(subject_detail) or _BY_SUBJECT.get(subject_detail[:1])
    if by_status is not None and subject_detail not in ("0.0", "5.0"):
        return Verdict(by_status, False)
    return Verdict("other", False)
