"""A throwaway PostgreSQL cluster from Debian's server binaries, on a free loopback port."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .ports import free_port, wait_for_port


def bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    path = Path(out)
    if not (path / "initdb").exists():
        raise RuntimeError(f"PostgreSQL server binaries not in {path} (Debian: apt-get install postgresql)")
    return path


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        self.port = free_port()
        self.user = None

    def _as_owner(self, cmd: list[str]) -> list[str]:
        # initdb refuses to run as root: run the server as the unprivileged 'postgres' user.
        if os.geteuid() == 0:
            return ["runuser", "-u", self.user, "--", *cmd]
        return cmd

    def start(self) -> "Postgres":
        bins = bindir()
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = self.dir / "data"
        subprocess.run(self._as_owner([str(bins / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                       "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
        subprocess.run(self._as_owner([str(bins / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w",
                                       "-o", f"-p {self.port} -k {self.dir} -h 127.0.0.1 -F", "start"]),
                       check=True, capture_output=True)
        wait_for_port(self.port)
        return self

    def create_database(self, name: str) -> str:
        bins = bindir()
        subprocess.run([str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
                       check=True, capture_output=True)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(self._as_owner([str(bindir() / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
