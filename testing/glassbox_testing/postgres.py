"""A real PostgreSQL for the tests: Debian's `postgresql` package (`make cluster-tools` installs it), a
server of its own in a temporary folder on a loopback port, run as the `postgres` user when the tests
run as root (PostgreSQL refuses root), trusting local connections, stopped and deleted afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PostgresError(RuntimeError):
    pass


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise PostgresError("PostgreSQL is not installed: run `make cluster-tools` (installs Debian's postgresql package)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalPostgres:
    """`start()` gives a connection string to a fresh database; `stop()` stops the server (and `start()`
    brings the same one back, as a restart would); `close()` stops it and deletes its folder."""

    def __init__(self, folder: Path | None = None):
        # Directly under /tmp: the postgres user must reach it, and pytest's folders are root's alone.
        self.folder = folder or Path(tempfile.mkdtemp(prefix="glassbox-postgres-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.bin = _binaries()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        if not (self.data / "PG_VERSION").exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            if self._as_postgres:
                shutil.chown(self.folder, "postgres", "postgres")
            init = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
            if init.returncode != 0:
                raise PostgresError(f"initdb failed: {init.stderr[-2000:]}")
        started = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        if started.returncode != 0:
            log = (self.folder / "server.log").read_text()[-2000:] if (self.folder / "server.log").exists() else ""
            raise PostgresError(f"PostgreSQL did not start: {started.stderr[-1000:]} {log}")
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its connection string."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def wait_accepting(self, seconds: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + seconds
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
