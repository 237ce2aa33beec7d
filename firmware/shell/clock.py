# Wall clock and millisecond ticks for the firmware. Pure: the time sources are handed in.
#
# Wall time on the wire is Unix seconds, UTC (docs/architecture.md). MicroPython's ESP32 port
# counts `time.time()` from 2000-01-01 00:00:00 UTC, the Unix port and newer builds from 1970;
# `time.gmtime(0)[0]` names the epoch year, and `epoch_offset()` turns it into the seconds to
# add. The conversion happens here, at the edge, once.
#
# A reading is "synced" when the clock was set from NTP within `max_age_s` (default a day: an
# ESP32 RTC drifts by seconds per day, far below what a receipt needs) and the time is not
# before `EARLIEST`; a clock that was never set is not synced, and receipts say so (receipt
# field 12).
#
# Millisecond ticks wrap (MicroPython's `time.ticks_ms()` at 2**30 on the ESP32): their
# arithmetic is ticks.py's, re-exported here for the shells; `ticks_source()` is the counter.

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from ticks import ticks_add, ticks_diff  # noqa: F401  (the shells take them from here)

UNIX_2000 = const(946684800)  # 2000-01-01T00:00:00Z in Unix seconds
EARLIEST = const(1704067200)  # 2024-01-01T00:00:00Z: a clock before this was never set
DAY_S = const(86400)

_TICKS_MASK = const(0x3FFFFFFF)


def epoch_offset(epoch_year: int) -> int:
    """Seconds to add to the port's `time.time()` for Unix time, from `time.gmtime(0)[0]`."""
    if epoch_year == 1970:
        return 0
    if epoch_year == 2000:
        return UNIX_2000
    raise ValueError("unknown time epoch %r" % (epoch_year,))


try:
    from time import ticks_ms as _ticks_ms
except ImportError:  # CPython: a monotonic clock reduced to the same 2**30 range
    import time as _time

    def _ticks_ms():
        return int(_time.monotonic() * 1000) & _TICKS_MASK


def ticks_source():
    """The platform's millisecond tick counter: time.ticks_ms on MicroPython, a monotonic
    clock on CPython."""
    return _ticks_ms


class Clock:
    """The charger's wall clock: `now()` Unix seconds (UTC), `synced()` whether it is trusted.

    `time_fn` returns the port's seconds since its epoch (`time.time` on the device) and
    `offset` is `epoch_offset(...)` of that epoch. `mono_s_fn` is a monotonic seconds counter
    used to age the last sync (on the device `time.ticks_ms() // 1000` is not monotonic across
    wraps, so the caller passes a counter that is, or None to keep a sync valid until reboot).
    """

    def __init__(self, time_fn, offset: int = 0, max_age_s: int = DAY_S, mono_s_fn=None):
        self._time = time_fn
        self.offset = offset
        self.max_age_s = max_age_s
        self._mono = mono_s_fn
        self.synced_at: "int | None" = None  # mono seconds of the last sync (0 when not aged)
        self.syncs = 0

    def now(self) -> int:
        return int(self._time()) + self.offset

    def mark_synced(self) -> None:
        """The port's clock was just set from NTP."""
        self.synced_at = self._mono() if self._mono is not None else 0
        self.syncs += 1

    def mark_unsynced(self) -> None:
        self.synced_at = None

    def sync_age_s(self):
        """Seconds since the last sync, or None when never synced (0 when not aged)."""
        if self.synced_at is None:
            return None
        if self._mono is None:
            return 0
        return self._mono() - self.synced_at

    def synced(self) -> bool:
        age = self.sync_age_s()
        if age is None or age > self.max_age_s:
            return False
        return self.now() >= EARLIEST
