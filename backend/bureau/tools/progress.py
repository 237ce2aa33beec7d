"""A one-line progress bar on a terminal (blocks done / total, receipts/s, ETA, or a caller's
own figures), rewritten with \r at most a few times a second; nothing when the stream is not a
terminal."""

from __future__ import annotations

import sys
import time

WIDTH = 30
EVERY_S = 0.2


class ProgressBar:
    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.shown = self.stream.isatty()
        self.started = time.monotonic()
        self.last: float | None = None  # the first update is drawn at once
        self.drawn = False

    def __call__(self, done: int, total: int, receipts: int = 0, detail: str | None = None) -> None:
        """`detail` replaces the blocks / receipts/s / ETA text after the bar."""
        now = time.monotonic()
        if not self.shown or (self.last is not None and now - self.last < EVERY_S and done < total):
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        fill = WIDTH * done // total if total else WIDTH
        eta = elapsed * (total - done) / done if done else 0.0
        text = detail if detail is not None else (f"{done}/{total} blocks, {receipts / elapsed:,.0f} receipts/s, "
                                                  f"ETA {eta:,.0f} s")
        self.stream.write(f"\r[{'#' * fill}{'.' * (WIDTH - fill)}] {text} ")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """Ends the bar's line, so what comes next starts on its own."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
