"""A local PostgreSQL cluster of its own, from the server binaries (`pg_config --bindir`;
Debian: apt-get install postgresql), on a free port of 127.0.0.1 with one database per node.
Throwaway (a temporary folder, removed at stop) for the tests; kept in a given folder by
`DB=postgres just up`, so the chain stays between runs as it does on SQLite.

initdb and the server refuse to run as root: then they run as the unprivileged 'postgres'
user (the Debian package makes it), which owns the cluster's folder."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .mosquitto import free_port

SERVER_USER = "postgres"  # also the superuser name inside the cluster


def bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"pg_config not found ({e}); Debian: apt-get install postgresql") from None
    path = Path(out)
    if not (path / "initdb").exists():
        raise RuntimeError(f"PostgreSQL server binaries not in {path} (Debian: apt-get install postgresql)")
    return path


class PostgresCluster:
    def __init__(self, root: Path | None = None) -> None:
        self.throwaway = root is None
        self.root = Path(tempfile.mkdtemp(prefix="pg-")) if root is None else Path(root).resolve()
        self.data = self.root / "data"
        self.port = 0
        self.bins = bindir()

    def _run(self, tool: str, *args: str, as_owner: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bins / tool), *args]
        if as_owner and os.geteuid() == 0:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True)

    def _check(self, result: subprocess.CompletedProcess, what: str) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL: {what} failed in {self.root}: {(result.stderr or result.stdout).strip()}")

    def start(self) -> "PostgresCluster":
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            if subprocess.run(["runuser", "-u", SERVER_USER, "--", "test", "-w", str(self.root)]).returncode != 0:
                raise RuntimeError(f"PostgreSQL runs as the user {SERVER_USER!r}, which cannot reach {self.root}: "
                                   "let it through the folders above (chmod o+x), or choose another folder")
        if not (self.data / "PG_VERSION").exists():
            self._check(self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "-A", "trust", "--no-sync",
                                  "-E", "UTF8"), "initdb")
        elif self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")  # left running by a killed run
        self.port = free_port()
        self._check(self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                              f"-p {self.port} -k {self.root} -h 127.0.0.1 -F", "start"), "pg_ctl start")
        return self

    def database(self, name: str) -> str:
        """URL of database `name`, made if the cluster does not have it yet."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits and '_' only")
        made = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SERVER_USER, name, as_owner=False)
        if made.returncode != 0 and "already exists" not in made.stderr:
            self._check(made, f"createdb {name}")
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate" if self.throwaway else "fast", "-w", "stop")
        if self.throwaway:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
