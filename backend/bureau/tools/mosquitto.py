"""Start a private mosquitto broker on a loopback port, with a config file we write.

Used by `just demo`, `just up`, the benchmarks and the integration tests; the broker listens on
127.0.0.1 only and stores nothing on disk.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto)")


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before by this process: ports chosen
    ahead of their bind (genesis peer addresses, proxies, APIs) cannot collide."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


CHARGER_ACL = """\
# Bureau nodes: every charger topic (receipts, requests, replies, signed lists and tariffs).
user {bureau_user}
topic readwrite ev/v1/#

# Chargers log in with their charger id as user name and reach only their own topics.
pattern write ev/v1/charger/%u/receipt
pattern write ev/v1/charger/%u/auth
pattern write ev/v1/charger/%u/status
pattern write ev/v1/charger/%u/enroll
pattern read ev/v1/charger/%u/reply
pattern read ev/v1/charger/%u/cmd
pattern read ev/v1/bureau/#
"""


def write_broker_access(directory: Path, users: dict[str, str], bureau_user: str = "bureau") -> tuple[Path, Path]:
    """A password file (hashed with mosquitto_passwd) and the charger ACL, readable by the broker
    even when it drops root privileges to its own user."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    passwd, acl = directory / "passwd", directory / "acl"
    passwd.write_text("")
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for user, password in users.items():
        subprocess.run([tool, "-b", str(passwd), user, password], check=True, capture_output=True)
    acl.write_text(CHARGER_ACL.format(bureau_user=bureau_user))
    if os.geteuid() == 0:
        import pwd
        try:
            pw = pwd.getpwnam("mosquitto")
        except KeyError:
            pw = None
        if pw is not None:
            for f in (passwd, acl):
                os.chown(f, pw.pw_uid, pw.pw_gid)
                os.chmod(f, 0o600)
            # every folder up to the files must let the broker's user pass
            for d in [directory, *directory.parents]:
                if d == Path("/"):
                    break
                os.chmod(d, os.stat(d).st_mode | 0o001)
    return passwd, acl


class Mosquitto:
    """A broker process. `password_file`/`acl_file` switch off anonymous access."""

    def __init__(self, port: int | None = None, workdir: Path | None = None,
                 password_file: Path | None = None, acl_file: Path | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.password_file = password_file
        self.acl_file = acl_file
        self.proc: subprocess.Popen | None = None

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_queued_messages 100000",
            "max_inflight_messages 1000",
            "max_packet_size 65536",
        ]
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: "
                                   f"{(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mosquitto did not listen on port {self.port}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
