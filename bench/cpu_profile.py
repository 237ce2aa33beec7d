"""CPU by component of running processes: py-spy samples each process's running threads (100 Hz,
raw collapsed stacks), samples of threads that wait (`WAITS`) are left out, each other sample is
charged to the component of the innermost frame that names one (`COMPONENTS`, by file path), and
the shares are scaled to the processes' measured CPU time (utime + stime from /proc), so the
figures add up to what the processes really used.

Used by bench/ingest.py --profile: CPU-ms per 1,000 committed receipts, by component, for the
nodes together and for the bench's own publisher.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE_HZ = 100

# (component, path fragments): the first component whose fragment appears in a frame's file,
# looking from the innermost frame outwards. Order matters: the more specific first.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("signatures (verify receipts, sign replies)", ("nacl/", "bureau/crypto.py")),
    ("receipt decoding", ("bureau/receipts/codec.py",)),
    ("state map and records", ("bureau/ledger/statemap.py", "bureau/ledger/records.py", "ledger/canonical.py")),
    ("storage (SQLAlchemy, SQLite)", ("sqlalchemy/", "sqlite3/", "bureau/storage/", "psycopg/")),
    ("paho MQTT", ("paho/",)),
    ("consensus and peer messaging", ("bureau/consensus/", "bureau/peers/")),
    ("execution (ledger rules)", ("bureau/ledger/", "bureau/chain.py")),
    ("ingest glue (queues, locks, metrics, replies)", ("bureau/ingest/", "bureau/receipts/", "(queue.py",
                                                        "bureau/metrics.py", "prometheus_client/")),
    ("API and HTTP", ("litestar/", "bureau/api/", "uvicorn/", "httptools/", "anyio/")),
    ("bench publisher", ("bench/ingest.py",)),
)
OTHER = "other (interpreter, threading, GC)"

# Innermost frames where a thread waits, not computes (py-spy under load reports some waiting
# threads as active): lock and event waits, select loops, blocking socket reads, fsync.
WAITS = ("Condition.wait (threading.py", "Event.wait (threading.py", "Thread.join (threading.py",
         "(selectors.py", "Runner.run (asyncio/runners.py", "PeerTransport._serve (bureau/peers/transport.py",
         "Client._loop (paho/mqtt/client.py", "Wal.append (bureau/consensus/replica.py",
         "DefaultDialect.do_commit (sqlalchemy/engine/default.py")


def component(stack: str) -> str | None:
    """The component of one collapsed stack (`frame;frame;...`, outermost first); None for a
    thread that waits."""
    frames = stack.split(";")
    if any(w in frames[-1] for w in WAITS):
        return None
    for frame in reversed(frames):
        for name, fragments in COMPONENTS:
            if any(f in frame for f in fragments):
                return name
    return OTHER


def cpu_ms(pid: int) -> float:
    """utime + stime of a process and its threads so far, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


class Profile:
    """py-spy recording a set of processes until they exit or `stop` is called."""

    def __init__(self, out_dir: Path, pids: dict[str, int]) -> None:
        tool = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(tool).exists():
            raise SystemExit("--profile needs py-spy (pip install -e .[dev])")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.pids = pids
        self.cpu_start = {name: cpu_ms(pid) for name, pid in pids.items()}
        self.cpu_used: dict[str, float] = {}
        self.procs = {name: subprocess.Popen(
            [tool, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw", "--nonblocking",
             "--threads", "--output", str(self.out_dir / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for name, pid in pids.items()}

    def stop(self) -> None:
        """Read the CPU used since the start, then end the recordings (SIGINT writes the files)."""
        self.cpu_used = {name: cpu_ms(pid) - self.cpu_start[name] for name, pid in self.pids.items()}
        for proc in self.procs.values():
            proc.send_signal(2)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    def breakdown(self, names: list[str], per: int) -> dict[str, float]:
        """CPU-ms per `per` units of work, by component, for the processes `names` together."""
        samples: Counter[str] = Counter()
        for name in names:
            path = self.out_dir / f"{name}.txt"
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                if stack and count.isdigit() and (part := component(stack)) is not None:
                    samples[part] += int(count)
        total_ms = sum(self.cpu_used.get(n, 0.0) for n in names)
        seen = sum(samples.values())
        if not seen or not per:
            return {}
        out = {c: round(total_ms * n / seen / per * 1000, 1) for c, n in samples.most_common()}
        out["total"] = round(total_ms / per * 1000, 1)
        return out
