"""Start a private mosquitto broker on a loopback port, with a config file we write.

Used by `just demo`, `just up`, the benchmarks and the integration tests; the broker listens on
127.0.0.1 only and keeps no messages on disk. Nobody is anonymous: every client logs in with its
own user name, which is also its client id (`use_username_as_clientid`), and the ACL says what
each may read and write (docs/broker.md). With `tls` the one listener speaks TLS only.

Logins come from two places: the ones handed out here (bureau links, fleet and operator tools,
and chargers in tests of the broker itself), kept in credentials.json, and the chargers of the
on-chain registry (`set_chargers`, from bureau.tools.broker_registry), kept in chargers.json.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .. import topics
from ..config import BROKER_LINKS
from ..ledger.tx import ID_RE
from ..privatefile import exclusive_lock, write_private
from .pki import TlsFiles, client_tls_context


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto)")


_handed_out: set[int] = set()


def _quiet_ports() -> range:
    """Ports below the kernel's ephemeral range (where it picks the local end of outgoing
    connections), or an empty range when there is too little room below it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(10_000, low) if low - 10_000 >= 5_000 else range(0)


_QUIET_PORTS = _quiet_ports()


def free_port() -> int:
    """A loopback port free now and never handed out before by this process: ports chosen
    ahead of their bind (genesis peer addresses, proxies, APIs) cannot collide. Taken below the
    ephemeral range: there no outgoing connection on the machine takes it as its local port
    meanwhile (a killed node's API port stays unbound until its restart binds it again)."""
    while True:
        if _QUIET_PORTS:
            port = _QUIET_PORTS[secrets.randbelow(len(_QUIET_PORTS))]
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


ROLES = ("charger", "ingest", "authz", "fleet", "operator", "worker")

# Chargers log in with their charger id as user name and reach only their own topics. Patterns
# apply to every user; each user's block below adds what its role needs.
CHARGER_PATTERNS = "".join([f"pattern write {topics.acl_pattern(leaf)}\n" for leaf in topics.CHARGER_PUBLISHES]
                           + [f"pattern read {topics.acl_pattern(leaf)}\n" for leaf in topics.CHARGER_READS])
_every = topics.every_charger

ROLE_TOPICS = {
    # a charger: the bureau's signed list and tariff, besides its own topics (the patterns)
    "charger": (f"read {topics.BUREAU_ALL}",),
    # a bureau's ingest link: every charger's receipts in, acks and rejects out, and every
    # charger's retained status and last will (who is online, for the node's metrics)
    "ingest": (f"read {_every(topics.RECEIPT)}", f"write {_every(topics.REPLY)}", f"read {_every(topics.STATUS)}"),
    # a bureau's authorization link: requests in, replies out, and the retained signed list and
    # tariff, which it reads back to restore them when they are changed or erased
    "authz": (f"read {_every(topics.AUTH)}", f"write {_every(topics.REPLY)}",
              f"readwrite {topics.LIST_ALL}", f"readwrite {topics.TARIFF}"),
    # a load generator or test harness speaking for many simulated chargers on one connection
    "fleet": tuple(f"write {_every(leaf)}" for leaf in topics.CHARGER_PUBLISHES)
             + tuple(f"read {_every(leaf)}" for leaf in topics.CHARGER_READS + (topics.STATUS, topics.ENROLL)),
    # a bureau's ingest worker (`<node id>.<worker id>`): receipts in (through its bureau's shared
    # subscription), the acks and rejects its node signed out; nothing else
    "worker": (f"read {_every(topics.RECEIPT)}", f"write {_every(topics.REPLY)}"),
    # an operator's or technician's tool: reads what chargers announce (enrollment, status), sends
    # nothing
    "operator": (f"read {_every(topics.ENROLL)}", f"read {_every(topics.STATUS)}"),
}


def bureau_username(node_id: str, link: str) -> str:
    """The user name of one of a bureau's broker links: `<node id>.<link>` (docs/broker.md)."""
    if link not in BROKER_LINKS:
        raise ValueError(f"unknown broker link {link!r}; links are {', '.join(BROKER_LINKS)}")
    return f"{node_id}.{link}"


class BrokerAccess:
    """Who may log in to a broker and what each may do: the password file (hashed by
    mosquitto_passwd), the ACL, and the handed-out credentials (credentials.json) so a stack
    restarted on the same directory gives everyone the same login. All three files are 0600;
    the first two belong to the broker's user when we run as root."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.passwd_path = self.directory / "passwd"
        self.acl_path = self.directory / "acl"
        self.credentials_path = self.directory / "credentials.json"
        self.registry_path = self.directory / "chargers.json"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.users: dict[str, dict[str, str]] = {}  # user -> {"role": ..., "password": ...}
        self.chargers: dict[str, str] = {}  # the registry's chargers: charger id -> password
        self._lock = threading.Lock()
        with self._files():
            if not (self.passwd_path.exists() and self.acl_path.exists()):
                self._write()

    @contextmanager
    def _files(self):
        """Hold the directory's lock file and load its current contents: the broker-sync daemon
        and an operator's command may change the same directory at once, and each change starts
        from what the other last wrote."""
        with self._lock, exclusive_lock(self.directory / ".lock"):
            self.users = json.loads(self.credentials_path.read_text()) if self.credentials_path.exists() else {}
            self.chargers = json.loads(self.registry_path.read_text()) if self.registry_path.exists() else {}
            yield

    def add(self, user: str, role: str, password: str | None = None) -> tuple[tuple[str, str], bool]:
        """(user, password) of `user` in `role`, made now (with a random password unless one is
        given) when unknown; the flag says whether the files changed."""
        if role not in ROLES:
            raise ValueError(f"unknown broker role {role!r}; roles are {', '.join(ROLES)}")
        if role == "charger" and not ID_RE.match(user):
            raise ValueError(f"charger id {user!r} is not 1-32 of A-Z a-z 0-9 . _ - (MQTT topics and ACL "
                             "patterns use it as is)")
        if not USERNAME_RE.match(user):
            raise ValueError(f"broker user name {user!r} is not 1-64 of A-Z a-z 0-9 . _ -")
        with self._files():
            known = self.users.get(user)
            if user in self.chargers:
                raise ValueError(f"broker user {user!r} is a charger of the on-chain registry")
            if known is not None:
                if known["role"] != role:
                    raise ValueError(f"broker user {user!r} already exists as {known['role']}, not {role}")
                if password is not None and known["password"] != password:
                    raise ValueError(f"broker user {user!r} already exists with another password")
                return (user, known["password"]), False
            self.users[user] = {"role": role, "password": password or secrets.token_urlsafe(24)}
            self._write()
            return (user, self.users[user]["password"]), True

    def set_chargers(self, chargers: dict[str, str]) -> bool:
        """Make the chargers of the registry exactly `chargers` (charger id -> password); True
        when that changed the files. A charger id that is a login handed out here is refused."""
        for cid in chargers:
            if not ID_RE.match(cid):
                raise ValueError(f"charger id {cid!r} is not 1-32 of A-Z a-z 0-9 . _ -")
        with self._files():
            taken = sorted(set(chargers) & set(self.users))
            if taken:
                raise ValueError(f"charger ids {', '.join(taken)} are already broker logins of other roles")
            if chargers == self.chargers:
                return False
            self.chargers = dict(chargers)
            self._write()
            return True

    def _write(self) -> None:
        """Write all four files (under the lock of `_files`), each by rename of a fresh temporary
        file, so a reader never sees half a file."""
        logins = {u: v["password"] for u, v in self.users.items()} | self.chargers
        write_private(self.credentials_path, json.dumps(self.users, indent=1, sort_keys=True))
        write_private(self.registry_path, json.dumps(self.chargers, indent=1, sort_keys=True))
        write_private(self.passwd_path, "".join(f"{u}:{pw}\n" for u, pw in sorted(logins.items())),
                      _hash_passwords if logins else None)
        write_private(self.acl_path, self.acl_text())

    def acl_text(self) -> str:
        blocks = [f"# Written by bureau.tools.mosquitto from {self.credentials_path.name}; see docs/broker.md.\n",
                  CHARGER_PATTERNS]
        roles = {u: v["role"] for u, v in self.users.items()} | dict.fromkeys(self.chargers, "charger")
        for user, role in sorted(roles.items()):
            blocks.append(f"\nuser {user}\n" + "".join(f"topic {t}\n" for t in ROLE_TOPICS[role]))
        return "".join(blocks)


USERNAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


def _hash_passwords(path: str) -> None:
    """mosquitto_passwd -U: hash the user:password lines of the file at `path` in place."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-U", path], check=True, capture_output=True)


def connack_code(port: int, user: str, password: str, timeout: float = 2.0, *, ca_file: Path | None = None) -> int:
    """The CONNACK return code the broker gives this login (0: accepted); a bare MQTT 3.1.1
    CONNECT on a socket (over TLS verified against `ca_file` when given), closed at once. Only
    for a user nobody is connected as: with use_username_as_clientid it would take over that
    user's connection."""
    def field(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b
    body = field(b"MQTT") + bytes([4, 0xC2]) + (10).to_bytes(2, "big") + field(user.encode()) \
        + field(user.encode()) + field(password.encode())
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        s = client_tls_context(ca_file).wrap_socket(raw, server_hostname="127.0.0.1") if ca_file else raw
        s.sendall(bytes([0x10]) + _remaining_length(len(body)) + body)
        ack = b""
        while len(ack) < 4:
            chunk = s.recv(4 - len(ack))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            ack += chunk
        s.sendall(b"\xe0\x00")
    if ack[0] != 0x20:
        raise ConnectionError(f"broker answered CONNECT with packet type {ack[0] >> 4}")
    return ack[3]


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n // 128, n % 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


# Per-client limits on outgoing QoS 1 messages (docs/broker.md, "Queues"). A client that is slow,
# paused or offline with a persistent session (a bureau's ingest link) has its messages queued;
# past a limit mosquitto drops the rest for that client, and its defaults (20 in flight, 1000
# queued) drop most of a burst. Both bounds are per client and hold a bureau's share of a long
# outage: a million receipts of some 220 bytes, and 256 MiB of payload, so that a stuck client
# cannot take the broker's memory (the count also bounds mosquitto's overhead per tiny message).
QUEUE_LIMITS = (
    "max_inflight_messages 1000",
    "max_queued_messages 1000000",
    f"max_queued_bytes {256 * 1024 * 1024}",
)


def broker_config(port: int, *, bind: str | None, passwd_file: Path | None, acl_file: Path | None,
                  tls: TlsFiles | None, run_as: str | None) -> str:
    """mosquitto.conf of a bureau broker: one listener (TLS when `tls`), logins from the
    password file and the ACL (`passwd_file` None: anonymous, for tests of MQTT itself)."""
    lines = [f"listener {port}" + (f" {bind}" if bind else "")]
    if tls:
        # TLS 1.2 or later with the network's certificate; clients verify it against the CA
        # and need no certificate of their own: they log in with user name and password
        lines += [f"cafile {tls.ca_file}", f"certfile {tls.cert_file}", f"keyfile {tls.key_file}",
                  "tls_version tlsv1.2", "require_certificate false"]
    if passwd_file:
        # a client's id is its user name: nobody can connect under another's id and so take
        # over its connection and its share of the messages
        lines.append("use_username_as_clientid true")
    if run_as:
        # The stack's broker runs as whoever starts it, even root, so it reads its 0600 files
        # where they are; mosquitto would otherwise drop root for its own user, which then
        # cannot re-read them on SIGHUP inside a private folder.
        lines.append("user " + run_as)
    lines += [
        "persistence false",
        "log_dest stderr",
        # notice is where mosquitto says "Outgoing messages are being dropped for client <id>"
        "log_type error",
        "log_type warning",
        "log_type notice",
        *QUEUE_LIMITS,
        "max_packet_size 65536",
    ]
    if passwd_file:
        lines += ["allow_anonymous false", f"password_file {passwd_file}", f"acl_file {acl_file}"]
    else:
        lines.append("allow_anonymous true")
    return "\n".join(lines) + "\n"


class Mosquitto:
    """A broker process. Its logins live in `<workdir>/access` (see BrokerAccess); `anonymous`
    turns them off, for tests of MQTT itself that use free topic names and need no ACL. With
    `tls` its listener speaks TLS only; `ca_file` is what its clients verify it against."""

    def __init__(self, port: int | None = None, workdir: Path | None = None, *, anonymous: bool = False,
                 tls: TlsFiles | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.access = None if anonymous else BrokerAccess(self.workdir / "access")
        self.tls = tls
        self.proc: subprocess.Popen | None = None

    @property
    def ca_file(self) -> Path | None:
        return self.tls.ca_file if self.tls else None

    def config_text(self) -> str:
        return broker_config(self.port, bind="127.0.0.1", tls=self.tls, run_as=pwd.getpwuid(os.geteuid()).pw_name,
                             passwd_file=self.access and self.access.passwd_path,
                             acl_file=self.access and self.access.acl_path)

    def connack(self, user: str, password: str) -> int:
        """The CONNACK code this login gets now (see connack_code)."""
        return connack_code(self.port, user, password, ca_file=self.ca_file)

    def login(self, user: str, role: str = "charger", password: str | None = None) -> tuple[str, str]:
        """(username, password) for `user` in `role` (see ROLES), made now when unknown; a running
        broker takes a new login at once, without a restart."""
        if self.access is None:
            raise RuntimeError("this broker is anonymous: it has no logins")
        login, changed = self.access.add(user, role, password)
        if changed and self.running:
            self.reload(login)
        return login

    def login_bureau(self, node_id: str) -> tuple[str, str]:
        """Logins for each of a bureau's broker links (`<node id>.<link>`, one password); returns
        (node id, password) as the node's BUREAU_MQTT_USERNAME and BUREAU_MQTT_PASSWORD."""
        (_, password) = self.login(bureau_username(node_id, BROKER_LINKS[0]), BROKER_LINKS[0])
        for link in BROKER_LINKS[1:]:
            self.login(bureau_username(node_id, link), link, password)
        return node_id, password

    def login_worker(self, node_id: str, worker_id: str) -> tuple[str, str]:
        """The broker login of one of a bureau's ingest workers, `<node id>.<worker id>`."""
        return self.login(f"{node_id}.{worker_id}", "worker")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reload(self, probe: tuple[str, str] | None = None, timeout: float = 10.0) -> None:
        """SIGHUP: mosquitto re-reads its password file and ACL. With `probe`, a login nobody
        uses yet, wait until the broker accepts it."""
        self.proc.send_signal(signal.SIGHUP)
        if probe is None:
            return
        deadline = time.monotonic() + timeout
        while (code := self.connack(*probe)) != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto still refuses {probe[0]} (CONNACK {code}) after a reload")
            time.sleep(0.05)

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
