"""Where notices come from: Maildirs, mbox files, single messages, CSV bounce lists, and folders
of them. Anything unreadable becomes an Unparsed notice naming the file, never an exception.
"""

from __future__ import annotations

import csv
import io
import mailbox
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from rollout.bounces.model import Bounce, Kind, Notice, Unparsed
from rollout.bounces.reader import read_message
from rollout.bounces.reasons import basic_code, enhanced_status, reason
from rollout.bounces.verdict import judge


class MissingPath(FileNotFoundError):
    """A path given on the command line does not exist."""


def check_paths(paths: Iterable[Path]) -> None:
    """Refuse before reading anything if a path is missing (a typo must not look like 'done')."""
    for path in paths:
        if not path.exists():
            raise MissingPath(f"no such file or directory: {path}")


def iter_bounces(paths: Iterable[Path]) -> Iterator[Notice]:
    """Every notice in Maildirs, mbox files, single messages, CSV lists and folders of them."""
    for path in paths:
        yield from _read_path(path)


def _read_path(path: Path) -> Iterator[Notice]:
    try:
        if path.is_dir():
            if all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
                yield from _read_maildir(path)
            else:
                for child in sorted(path.iterdir()):
                    if not child.name.startswith("."):  # .DS_Store, Maildir++, editor files
                        yield from _read_path(child)
        elif not path.is_file():
            yield Unparsed(str(path), "no such file or directory")
        elif path.suffix.lower() == ".csv":
            yield from _read_list(path)
        elif _is_mbox(path):
            yield from _read_mbox(path)
        else:
            yield from _dated(read_message(str(path), path.read_bytes()), _mtime(path))
    except OSError as error:  # unreadable: permissions, vanished meanwhile
        yield Unparsed(str(path), f"cannot read ({error.strerror or type(error).__name__})")


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(5) == b"From "


def _read_maildir(path: Path) -> Iterator[Notice]:
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.iterkeys()):
        try:
            data = box.get_bytes(key)
        except KeyError:  # moved away meanwhile by a mail client
            continue
        yield from _dated(read_message(f"{path}#{key}", data), _arrival(box, key))


def _read_mbox(path: Path) -> Iterator[Notice]:
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            notices = read_message(f"{path}#{number}", box.get_bytes(key))
            yield from _dated(notices, _mtime(path))
    finally:
        box.close()


def _dated(notices: Iterable[Notice], arrived: Callable[[], float]) -> Iterator[Notice]:
    """A bounce without Date or Received stamps is dated by its arrival (Maildir) or its file:
    neither is earlier than the bounce, so a notice is called stale only when it surely is."""
    for notice in notices:
        if isinstance(notice, Bounce) and notice.date is None:
            notice = replace(notice, date=datetime.fromtimestamp(arrived(), UTC))
        yield notice


def _mtime(path: Path) -> Callable[[], float]:
    return lambda: path.stat().st_mtime


def _arrival(box: mailbox.Maildir, key: str) -> Callable[[], float]:
    return lambda: box.get_message(key).get_date()


def _read_list(path: Path) -> Iterator[Notice]:
    """Rows of `address,code[,reason]` (`;` works too); code 550, 5.1.1 or `550 5.1.1`.

    A row is judged like any bounce, by its code and words. A list carries no dates: its file's
    modification time stands for when it was written.
    """
    # Here, not at the top: the exports package brings pandas, which mail folders never need.
    from rollout.exports.format import decode_small, guess_delimiter

    text = decode_small(path.read_bytes())
    delimiter = guess_delimiter(text.partition("\n")[0])
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(rows, [])]
    if "address" not in header or "code" not in header:
        yield Unparsed(f"{path}:1", f"header must name address and code, not {header}")
        return
    date = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    for row in rows:
        if any(cell.strip() for cell in row):
            cells = dict(zip(header, (cell.strip() for cell in row), strict=False))
            yield _list_notice(f"{path}:{rows.line_num}", cells, date)


def _list_notice(source: str, cells: dict[str, str], date: datetime) -> Notice:
    address, words = cells.get("address", "").strip("<> "), cells.get("reason", "")
    given = cells.get("code") or words  # some exports put the whole reply in one column
    code, status = basic_code(given), enhanced_status(given)
    klass = (status or str(code or ""))[:1]
    if not address:
        return Unparsed(source, "no address")
    if klass not in ("2", "4", "5"):
        return Unparsed(source, f"code {given!r} is neither 4xx/4.x.x nor 5xx/5.x.x")
    if klass == "2":
        why = reason("delivered", status, code, words)
        return Bounce(source, Kind.DELIVERED, None, (address,), code, status, why, date)
    verdict = judge(status, code, words)
    kind = Kind.HARD if verdict.hard else Kind.SOFT
    why = reason(verdict.category, status, code, words)
    return Bounce(source, kind, None, (address,), code, status, why, date, verdict.sender_problem)
