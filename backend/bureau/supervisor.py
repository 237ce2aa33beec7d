"""One failure policy for every background loop of a node.

A loop body that raises an exception nobody expected (a database that went read-only, a bug)
leaves the node in a state no one reasoned about. So the first such failure is logged once with
its traceback and recorded as the node's failure reason, and the node fails as a whole: the
callbacks registered with `on_failure` stop intake (no more receipts taken from MQTT), make
/healthz and /readyz answer 503 with the reason, and stop the process, which exits non-zero
(`bureau run` returns EXIT_FAILED) so a service manager restarts it; the restarted node
recovers from its write-ahead log and storage. Later failures (other loops falling over as the
node goes down) are counted, not logged again.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

EXIT_FAILED = 70  # EX_SOFTWARE of sysexits.h: an internal error, restart me
EXIT_GRACE_S = 2.0  # the failed node answers 503 this long before it exits, so probes see why


class Supervisor:
    def __init__(self) -> None:
        self.reason: str | None = None
        self.failed = threading.Event()
        self.later_failures = 0
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[str], None]] = []

    def on_failure(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    def fail(self, loop: str, exc: BaseException) -> None:
        with self._lock:
            if self.reason is not None:
                self.later_failures += 1
                return
            self.reason = f"{loop}: {type(exc).__name__}: {exc}"[:500]
        log.critical("background loop %s failed; the node stops", loop, exc_info=exc)
        self.failed.set()
        for cb in self._callbacks:
            try:
                cb(self.reason)
            except Exception:  # one callback's failure must not keep the others from running
                log.exception("failure callback %r raised", cb)

    def stop_after_failure(self, stop: Callable[[], None], grace_s: float = EXIT_GRACE_S) -> None:
        """Call `stop` (end the process's main loop) `grace_s` after a failure."""
        self.on_failure(lambda reason: threading.Timer(grace_s, stop).start())

    def run(self, loop: str, body: Callable[..., None], *args) -> None:
        """Run `body(*args)` (a loop that returns when asked to stop); any exception fails the node."""
        try:
            body(*args)
        except Exception as e:
            self.fail(loop, e)

    def thread(self, loop: str, body: Callable[..., None], *args) -> threading.Thread:
        """A daemon thread (not started) running `body` under this policy."""
        return threading.Thread(target=self.run, args=(loop, body, *args), name=loop, daemon=True)
