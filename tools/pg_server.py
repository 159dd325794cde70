"""A throw-away PostgreSQL server for tests and benchmarks: initdb in a temp dir, 127.0.0.1.

In a test (tests/conftest.py starts one per session as the `postgres_url` fixture):

    with PgServer() as server:
        server.url          # postgresql://rollout@127.0.0.1:PORT/rollout (no password in it)
        server.password     # generated; clients take it from PGPASSWORD (server.env)
        url = server.create_database("t_abc")   # an empty database of its own
        server.drop_database("t_abc")

On leaving the block the server stops (`pg_ctl stop -m fast`) and its directory is deleted.
If the owning process dies without leaving it (SIGKILL, a CI timeout), a watchdog process
(`--reap`, started with the server in a session of its own) does the same within a second.

For developers and the benchmarks, in its own terminal (stays up until Ctrl-C):

    .venv/bin/python tools/pg_server.py            # prints `export ...` lines to paste
    .venv/bin/python tools/pg_server.py --durable  # fsync on, as a real server (bench figures)
    python3 tools/pg_server.py --bindir            # where the binaries are; exit 1 if none

Binaries: the directory of `pg_ctl` on PATH if `initdb` and `postgres` are next to it, else the
highest version of /usr/lib/postgresql/*/bin (Debian's `postgresql` package puts them there,
not on PATH).

PostgreSQL refuses to run as root. As root, initdb, pg_ctl and the server run as the
unprivileged `postgres` user (created by Debian's `postgresql` package), and the temp dir is
handed to that user; otherwise they run as the current user.

Authentication is scram-sha-256 over TCP (and on the unix socket in the temp dir) with a
generated password for the one user, so tests exercise credentials from the environment.

Fast settings (not durable: tests and throw-away servers ONLY): `fsync = off`,
`full_page_writes = off` and `initdb --no-sync`. They only matter if the machine loses power
or the OS crashes: a commit is still written to the OS before it returns
(`synchronous_commit` stays on), so killed clients, and even a killed server, lose nothing
that was committed. `durable=True` (`--durable`) leaves PostgreSQL's defaults.

Only the standard library is needed to import this module and to find the binaries (CI asks
before the venv exists); creating and dropping databases uses psycopg 3.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

_BINARIES = ("initdb", "pg_ctl", "postgres")
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_FAST_SETTINGS = {"fsync": "off", "full_page_writes": "off"}


class PgServerError(RuntimeError):
    """The server could not be found, started or stopped (the message says why)."""


def find_bindir() -> Path | None:
    """The directory with initdb, pg_ctl and postgres, or None if PostgreSQL is not installed."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        directory = Path(on_path).parent
        if all((directory / name).is_file() for name in _BINARIES):
            return directory
    versions: list[tuple[tuple[int, ...], Path]] = []
    for candidate in _DEBIAN_ROOT.glob("*/bin"):
        version = candidate.parent.name
        if re.fullmatch(r"\d+(\.\d+)*", version) and all(
            (candidate / name).is_file() for name in _BINARIES
        ):
            versions.append((tuple(int(part) for part in version.split(".")), candidate))
    return max(versions)[1] if versions else None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class PgServer:
    """A PostgreSQL server of its own, in a temp dir, for as long as the `with` block lasts."""

    def __init__(
        self,
        *,
        user: str = "rollout",
        dbname: str = "rollout",
        host: str = "127.0.0.1",
        port: int = 0,
        durable: bool = False,
        bindir: Path | None = None,
        max_connections: int = 200,
        start_timeout: float = 60.0,
    ) -> None:
        for name in (user, dbname):
            if not _NAME.fullmatch(name):
                raise ValueError(f"not a plain lower-case SQL name: {name!r}")
        self.user = user
        self.dbname = dbname
        self.host = host
        self.port = port
        self.durable = durable
        self.bindir = bindir
        self.max_connections = max_connections
        self.start_timeout = start_timeout
        self.password = secrets.token_urlsafe(24)
        self.directory: Path | None = None
        self._os_user: pwd.struct_passwd | None = None
        self._running = False
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- what clients need -------------------------------------------------------------

    def url_for(self, dbname: str) -> str:
        """postgresql://USER@HOST:PORT/DB: no password (that comes from PGPASSWORD)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    @property
    def env(self) -> dict[str, str]:
        """What a client's environment needs besides the URL (libpq and psycopg read it)."""
        return {"PGPASSWORD": self.password}

    @property
    def socket_dir(self) -> Path:
        return self._dir

    @property
    def log_file(self) -> Path:
        return self._dir / "server.log"

    # -- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        bindir = self.bindir or find_bindir()
        if bindir is None:
            raise PgServerError(
                "no PostgreSQL binaries (initdb, pg_ctl, postgres) on PATH or in "
                f"{_DEBIAN_ROOT}/*/bin: install Debian's `postgresql` package"
            )
        self.bindir = bindir
        self._os_user = self._server_user()
        self.directory = Path(tempfile.mkdtemp(prefix="rollout-pg-", dir=self._temp_parent()))
        try:
            self._start_watchdog()
            self._initdb()
            self._configure()
            self._start_with_retries()
            self._running = True
            self.create_database(self.dbname)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (fast: disconnects clients, no waiting) and delete its directory."""
        directory = self.directory
        if directory is None:
            return
        try:
            if self._running:
                self._running = False
                self._run("pg_ctl", "stop", "-D", str(directory / "data"), "-m", "fast", "-w")
        finally:
            self.directory = None
            shutil.rmtree(directory, ignore_errors=True)
            if self._watchdog is not None:
                self._watchdog.terminate()
                self._watchdog.wait()
                self._watchdog = None

    def _start_watchdog(self) -> None:
        """A small process of its own session that stops the server and deletes its directory
        if this process dies without doing so (SIGKILL, a test run's timeout): no orphans."""
        assert self.bindir is not None
        self._watchdog = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--reap", str(os.getpid()),
             str(self._dir), str(self.bindir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    # -- databases -----------------------------------------------------------------------

    def connect(self, dbname: str | None = None) -> Any:
        """A psycopg connection in autocommit mode (the password given, not read from env)."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=dbname or "postgres",
            password=self.password,
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, dbname: str) -> str:
        """CREATE DATABASE (empty, owned by the user); its URL."""
        from psycopg import sql

        if not _NAME.fullmatch(dbname):
            raise ValueError(f"not a plain lower-case SQL name: {dbname!r}")
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return self.url_for(dbname)

    def drop_database(self, dbname: str) -> None:
        """DROP DATABASE, disconnecting whoever is still connected (a test's leftover pool)."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )

    # -- internals -----------------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self.directory is None:
            raise PgServerError("the server is not running")
        return self.directory

    def _temp_parent(self) -> str:
        """The temp dir, or /tmp when the server runs as `postgres` and cannot reach $TMPDIR
        (e.g. under /root)."""
        parent = Path(tempfile.gettempdir()).resolve()
        if self._os_user is None:
            return str(parent)
        reachable = all(p.stat().st_mode & 0o001 for p in (parent, *parent.parents))
        return str(parent) if reachable else "/tmp"

    @staticmethod
    def _server_user() -> pwd.struct_passwd | None:
        """None: run as ourselves; as root, the `postgres` user (PostgreSQL refuses root)."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise PgServerError(
                "running as root, and PostgreSQL refuses to run as root, but there is no "
                "`postgres` user to run it as: install Debian's `postgresql` package (which "
                "creates it) or run the tests as an unprivileged user"
            ) from None

    def _run(self, binary: str, *args: str) -> None:
        assert self.bindir is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"LC_ALL": "C", "HOME": str(self._dir)})
        user = self._os_user
        try:
            subprocess.run(
                [str(self.bindir / binary), *args],
                cwd=self._dir,
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=self.start_timeout + 30,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        except subprocess.CalledProcessError as error:
            output = (error.stdout or "") + (error.stderr or "")
            raise PgServerError(
                f"{binary} {' '.join(args[:1])} failed ({error.returncode}): {output.strip()}"
                + self._log_tail()
            ) from None

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines) if lines else ""

    def _initdb(self) -> None:
        directory = self._dir
        password_file = directory / "password"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        if self._os_user:
            for path in (directory, password_file):
                os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)
        try:
            self._run(
                "initdb",
                "--pgdata",
                str(directory / "data"),
                "--username",
                self.user,
                "--pwfile",
                str(password_file),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-instructions",
                *(() if self.durable else ("--no-sync",)),
            )
        finally:
            password_file.unlink(missing_ok=True)

    def _configure(self) -> None:
        settings = {
            "listen_addresses": f"'{self.host}'",
            # A socket path longer than ~100 bytes is refused: then TCP only.
            "unix_socket_directories": f"'{self._dir}'" if len(str(self._dir)) < 80 else "''",
            "max_connections": str(self.max_connections),
            "password_encryption": "'scram-sha-256'",
            **({} if self.durable else _FAST_SETTINGS),
        }
        with (self._dir / "data" / "postgresql.conf").open("a") as conf:
            conf.write("\n# tools/pg_server.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_with_retries(self) -> None:
        """pg_ctl start on the chosen port, or on a free one (retried: another process can
        take a free port between our probe and the server's bind)."""
        attempts = 1 if self.port else 3
        for attempt in range(attempts):
            port = self.port or _free_port(self.host)
            try:
                self._run(
                    "pg_ctl",
                    "start",
                    "-D",
                    str(self._dir / "data"),
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-p {port}",
                    "-w",
                    "-t",
                    str(int(self.start_timeout)),
                )
            except PgServerError:
                if attempt + 1 == attempts:
                    raise
                continue
            self.port = port
            return


def _reap(parent: int, directory: Path, bindir: Path) -> int:
    """The watchdog: once `parent` is gone (we are re-parented), stop the server, delete it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the owner's terminate() ends us early
    while os.getppid() == parent:
        time.sleep(0.5)
    orphan = PgServer(bindir=bindir)
    orphan.directory = directory
    orphan._os_user = orphan._server_user()
    orphan._running = (directory / "data" / "postmaster.pid").exists()
    orphan.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Start a throw-away PostgreSQL server; print export lines; stop on Ctrl-C"
    )
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--user", default="rollout")
    parser.add_argument("--dbname", default="rollout")
    parser.add_argument(
        "--durable", action="store_true", help="PostgreSQL's default fsync settings (benchmarks)"
    )
    parser.add_argument(
        "--bindir", action="store_true", help="only print where the binaries are (exit 1: none)"
    )
    parser.add_argument("--reap", nargs=3, help=argparse.SUPPRESS)  # PID DIR BINDIR
    args = parser.parse_args(argv)
    if args.reap:
        return _reap(int(args.reap[0]), Path(args.reap[1]), Path(args.reap[2]))
    if args.bindir:
        found = find_bindir()
        if found is None:
            print("no PostgreSQL binaries found", file=sys.stderr)
            return 1
        print(found)
        return 0
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    started = time.monotonic()
    with PgServer(user=args.user, dbname=args.dbname, port=args.port, durable=args.durable) as pg:
        exports = {
            "ROLLOUT_STATE_URL": pg.url,
            "PGPASSWORD": pg.password,
            "PGHOST": pg.host,
            "PGPORT": str(pg.port),
            "PGUSER": pg.user,
            "PGDATABASE": pg.dbname,
        }
        for key, value in exports.items():
            print(f"export {key}={shlex.quote(value)}")
        print(
            f"# PostgreSQL from {pg.bindir} up in {time.monotonic() - started:.1f} s"
            f"{' (durable)' if pg.durable else ' (fsync off: throw-away)'}; data in "
            f"{pg.directory}; Ctrl-C stops it and deletes the data",
            flush=True,
        )
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
