"""Inputs whose admission check raised an exception nobody expected.

Admission only reads the state: checking one untrusted receipt or relayed transaction changes
nothing until it is added to the mempool. So when the check itself raises (a parser bug that one
crafted payload reaches), the node keeps that input for the operator and goes on, instead of
failing as a whole: failing would restart the node into the same payload, which the charger
sends again until it is acked, and every bureau would crash-loop on it. The input is not
answered, so the charger keeps it in its outbox and nothing is lost; once the bug is fixed its
next resend is billed.

Many distinct inputs failing within a short window are not one poison input but a broken node
(a state nobody reasoned about): that fails the node through the supervisor, as before.

Each kept input is two files in the quarantine directory, written by rename: `<sha256>.bin`, the
bytes as received, and `<sha256>.json` (`{"v": 1, "source", "topic", "error", "traceback",
"time"}`, UTC). At most `KEPT` inputs are kept; the oldest go first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import traceback
from collections import OrderedDict, deque
from datetime import datetime, timezone
from pathlib import Path

from typing import Callable

from ..privatefile import write_private
from ..supervisor import Supervisor

log = logging.getLogger(__name__)

KEPT = 100  # inputs kept on disk
BURST = 20  # this many distinct inputs failing within WINDOW_S fail the node
WINDOW_S = 60.0
RECORD_VERSION = 1


class Quarantine:
    def __init__(self, directory: Path | None, count: Callable[[str], None], supervisor: Supervisor | None = None,
                 kept: int = KEPT, burst: int = BURST, window_s: float = WINDOW_S,
                 clock=time.monotonic) -> None:
        """`count(source)` counts every input held (a node's metric, a worker's stats);
        `directory` None: inputs are logged and counted, not written (as in unit tests).
        Without a `supervisor` a burst is logged, not fatal."""
        self.directory, self.count, self.supervisor = directory, count, supervisor
        self.kept, self.burst, self.window_s, self.clock = kept, burst, window_s, clock
        self._seen: OrderedDict[str, None] = OrderedDict()  # digests held, bounded like the files
        self._recent: deque[float] = deque()  # times of distinct failures within the window
        self.held = 0  # distinct inputs held since start (the dashboard shows it)
        self._lock = threading.Lock()

    def hold(self, source: str, topic: str | None, payload: bytes, exc: Exception) -> None:
        """Keep `payload`, whose admission raised `exc`; fail the node on a burst of them."""
        digest = hashlib.sha256(payload).hexdigest()
        now = self.clock()
        with self._lock:
            again = digest in self._seen
            if not again:
                self._seen[digest] = None
                self.held += 1
                if len(self._seen) > self.kept:
                    self._seen.popitem(last=False)
                self._recent.append(now)
            while self._recent and now - self._recent[0] > self.window_s:
                self._recent.popleft()
            burst = len(self._recent) >= self.burst
        self.count(source)
        if again:
            return  # the charger's resend of one already kept: counted, not logged again
        log.error("admission of a %s raised %s: the input is kept as %s and not answered", source,
                  type(exc).__name__, digest, exc_info=exc)
        if self.directory is not None:
            try:
                self._write(digest, source, topic, payload, exc)
            except OSError as e:
                log.error("quarantine %s: %s", self.directory, e)
        if burst and self.supervisor is not None:
            self.supervisor.fail("admission", RuntimeError(
                f"{len(self._recent)} distinct inputs failed admission within {self.window_s:.0f} s; last: "
                f"{type(exc).__name__}: {exc}"))

    def _write(self, digest: str, source: str, topic: str | None, payload: bytes, exc: Exception) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        record = {"v": RECORD_VERSION, "source": source, "topic": topic, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": "".join(traceback.format_exception(exc)),
                  "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        write_private(d / f"{digest}.bin", payload)
        write_private(d / f"{digest}.json", json.dumps(record, indent=1))
        kept = sorted(d.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in kept[:max(0, len(kept) - self.kept)]:
            old.with_suffix(".bin").unlink(missing_ok=True)
            old.unlink(missing_ok=True)


def counter(metrics, name: str) -> Callable[[str], None]:
    """`count` for a node: its metric `name`, labelled by source."""
    return lambda source: metrics.inc(name, source)
