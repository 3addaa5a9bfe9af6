"""A throwaway PostgreSQL server for the test session.

:func:`start_server` runs ``initdb`` and ``pg_ctl start`` on a fresh data directory in a
temporary folder (as the ``postgres`` OS user when the tests run as root, since
PostgreSQL refuses to run as root), listening only on a Unix socket in that folder;
:meth:`PgServer.stop` stops it and removes the folder. When ``EVERSTORE_PG_CONNINFO``
is set, that server is used instead and nothing is started (nor restarted).

When no server binaries exist (in ``PATH`` or ``/usr/lib/postgresql/*/bin``), or the
``postgres`` extra is not installed, :func:`unavailable_reason` says why, and the tests
that need a server are skipped with that message. ``.ci/install-postgres.sh`` installs
Debian's package so that CI always runs them.

Run as a script to start a server by hand (``python tests/pg_server.py``): it prints
the conninfo and stops the server on Ctrl-C.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

ENV_VAR = "EVERSTORE_PG_CONNINFO"
_OS_USER = "postgres"

__all__ = [
    "ENV_VAR",
    "Location",
    "PgServer",
    "drop_schema",
    "find_bin_dir",
    "fresh_schema",
    "postgresql_url",
    "raw_connection",
    "start_server",
    "unavailable_reason",
]

#: ``(conninfo, schema)``: where one test's tables live
Location = tuple[str, str]


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (newest first)."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", path)
        return tuple(int(g) for g in match.groups() if g) if match else (0,)

    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        candidates.append(Path(found))
    for directory in candidates:
        if all((directory / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def unavailable_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    for module in ("psycopg", "psycopg_pool"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install 'everstore[postgres]'"
    if os.environ.get(ENV_VAR):
        return None
    if find_bin_dir() is None:
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in PATH or "
            f"/usr/lib/postgresql/*/bin, and {ENV_VAR} is not set: run "
            ".ci/install-postgres.sh or set it to a server's conninfo"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_OS_USER)
        except KeyError:
            return (
                "running as root and there is no 'postgres' OS user to run the server "
                f"(PostgreSQL refuses to run as root); set {ENV_VAR} instead"
            )
    return None


class PgServer:
    """A running server: ``conninfo`` connects to its ``postgres`` database."""

    def __init__(
        self, conninfo: str, *, bin_dir: Path | None = None, root: Path | None = None
    ) -> None:
        self.conninfo = conninfo
        self.bin_dir = bin_dir
        self.root = root

    @property
    def owned(self) -> bool:
        """True if this session started the server (so it may restart or stop it)."""
        return self.root is not None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def _pg_ctl(self, *args: str, timeout: float = 60.0) -> None:
        assert self.bin_dir is not None and self.root is not None
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        _run_as_owner(command, timeout=timeout)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is dropped, then the server is back."""
        if not self.owned:
            raise RuntimeError(f"cannot restart a server given by {ENV_VAR}")
        self._pg_ctl("restart", "-m", "fast", "-w", "-l", str(self.log_file))

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every server process quits at once, without a
        checkpoint or a flush of the WAL buffers, as in a crash. :meth:`start` brings
        it back (after recovery from the WAL on disk)."""
        if not self.owned:
            raise RuntimeError(f"cannot crash a server given by {ENV_VAR}")
        self._pg_ctl("stop", "-m", "immediate", "-w")

    def start(self) -> None:
        """``pg_ctl start`` after :meth:`crash`."""
        if not self.owned:
            raise RuntimeError(f"cannot start a server given by {ENV_VAR}")
        self._pg_ctl("start", "-w", "-l", str(self.log_file))

    def stop(self) -> None:
        """Stop the server (if this session started it) and remove its folder."""
        if self.root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._pg_ctl("stop", "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __repr__(self) -> str:
        return f"PgServer({self.conninfo!r})"


def _as_owner_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", _OS_USER, "--"]
    return ["su", _OS_USER, "-s", "/bin/sh", "-c"]  # pragma: no cover - no util-linux


def _run_as_owner(command: list[str], *, timeout: float) -> None:
    prefix = _as_owner_prefix()
    if prefix and prefix[-1] == "-c":  # su: one shell command line
        import shlex

        command = [*prefix, " ".join(shlex.quote(part) for part in command)]
    else:
        command = [*prefix, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def start_server() -> PgServer:
    """The server named by ``EVERSTORE_PG_CONNINFO``, or a fresh one started now."""
    given = os.environ.get(ENV_VAR)
    if given:
        return PgServer(given)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(unavailable_reason() or "no PostgreSQL binaries")
    root = Path(tempfile.mkdtemp(prefix="everstore-pg-"))
    try:
        os.chmod(root, 0o700)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_OS_USER)
            os.chown(root, owner.pw_uid, owner.pw_gid)
        socket_dir = root  # private folder: the socket is reachable only through it
        server = PgServer(
            f"host={socket_dir} port=5432 user={_OS_USER if os.geteuid() == 0 else _me()} "
            "dbname=postgres",
            bin_dir=bin_dir,
            root=root,
        )
        _run_as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(server.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                _OS_USER if os.geteuid() == 0 else _me(),
                "--no-sync",
            ],
            timeout=120,
        )
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{socket_dir}'",
            "port": "5432",
            "max_connections": "400",
            "shared_buffers": "64MB",
            # fsync stays on: commit costs are real. Less logging noise, quicker stop.
            "log_min_messages": "warning",
            "log_min_error_statement": "panic",
            "logging_collector": "off",
        }
        with open(server.data_dir / "postgresql.auto.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        server._pg_ctl("start", "-w", "-l", str(server.log_file))
        return server
    except BaseException:
        PgServer("", bin_dir=bin_dir, root=root).stop()
        raise


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def fresh_schema() -> str:
    """A schema name no test used before (tables of one test never meet another's)."""
    return f"t_{uuid.uuid4().hex[:16]}"


def raw_connection(conninfo: str) -> Any:
    """A plain autocommit psycopg connection, outside everstore."""
    import psycopg

    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


def drop_schema(conninfo: str, schema: str) -> None:
    """Remove a test's schema and everything in it (the server outlives the test)."""
    from psycopg import sql

    with raw_connection(conninfo) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":  # pragma: no cover - manual use
    import signal

    reason = unavailable_reason()
    if reason:
        raise SystemExit(reason)
    running = start_server()
    print(running.conninfo, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


def postgresql_url(conninfo: str) -> str:
    """``conninfo`` as a ``postgresql://`` URL (what the ``everstore`` command takes)."""
    from urllib.parse import quote, urlencode

    import psycopg

    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    dbname = quote(str(params.pop("dbname", "postgres")))
    return f"postgresql:///{dbname}?{urlencode({k: str(v) for k, v in params.items()})}"
