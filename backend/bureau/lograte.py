"""Log lines that hostile input can trigger, at a bounded rate: at most one line per key (e.g. a
refusal reason) per interval, and the next line of that key says how many were held back. The
counts that matter live in metrics; the log only shows that something is happening and a sample."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable


class ThrottledLog:
    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 256) -> None:
        self.logger, self.interval_s, self.clock, self.max_keys = logger, interval_s, clock, max_keys
        self._last: dict[str, tuple[float, int]] = {}  # key -> (time of its last line, held back since)
        self._lock = threading.Lock()

    def info(self, key: str, msg: str, *args, extra: dict | None = None) -> bool:
        """Log `msg % args` unless `key` had a line within the interval; True if it was logged.
        `extra`: the line's event fields (logfmt.py), with "held_back" added when lines were."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval_s:
                self._last[key] = (last[0], last[1] + 1)
                return False
            if last is None and len(self._last) >= self.max_keys:
                self._last.pop(next(iter(self._last)))  # keys are reasons, a short list: this only bounds it
            self._last[key] = (now, 0)
        held = last[1] if last else 0
        if held:
            msg += " (and %d more of %s in the %.0f s before)"
            args = (*args, held, key, now - last[0])
            extra = {**(extra or {}), "held_back": held}
        self.logger.info(msg, *args, extra=extra)
        return True
