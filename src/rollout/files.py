"""Writing a file atomically: every file the pipeline writes (write-back, rejects, reports,
previews) goes through here.

A temporary file `.<name>.<random>.tmp` beside the target is written, flushed and fsynced, then
renamed over the target, and the directory is fsynced so the rename itself is durable. A reader
sees the old file or the new one, never half of one; a crash or a full disk leaves the old file
and at most a temporary file, which `remove_stale_temp_files` clears on the next run. The
Maildir transport keeps its own protocol (tmp/ then new/), which is atomic in the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, TextIO, cast


@contextmanager
def atomic_text(path: Path, encoding: str, *, mode: int = 0o644) -> Iterator[TextIO]:
    """A text file (newline="": the caller writes the line ends) that replaces `path` when
    the block ends without an exception; otherwise `path` stays as it was."""
    with _replacing(path, "w", encoding, mode) as file:
        yield cast(TextIO, file)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """`data` as the whole new content of `path` (never written through a symlink)."""
    with _replacing(path, "wb", None, mode) as file:
        file.write(data)


@contextmanager
def _replacing(path: Path, how: str, encoding: str | None, mode: int) -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    newline = "" if "b" not in how else None
    file = os.fdopen(fd, how, encoding=encoding, newline=newline)
    try:
        yield file
        file.flush()
        os.fsync(file.fileno())
        file.close()
        os.chmod(temp, mode)  # mkstemp makes 0600
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):  # closing may fail flushing to a full disk: the file goes anyway
            file.close()
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def remove_stale_temp_files(path: Path) -> None:
    """Temporary files of `path` left by a run that was killed or hit a full disk (call it only
    while holding the lock that keeps other writers of `path` away)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    """Makes a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
