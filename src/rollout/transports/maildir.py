"""Maildir: each message a file in `path/new/`, the embedded default that needs no server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from rollout.transports.kinds import CampaignBlocked, Reply


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

    async def send(
        self, sender: str, recipient: str, data: bytes, ready: Awaitable[None] | None = None
    ) -> Reply:
        await self.open()
        if ready is not None:
            await ready  # nothing is written before it
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
