# The meter watch: the one judge of meter readings. Every read of the charger's meter, good or
# failed, is fed to a MeterWatch, which decides meter loss, rollback, a frozen meter and a
# replaced meter, and keeps the `meter_status` bits of receipt field 16 (docs/receipt-v1.md):
# bit 0 rollback, bit 1 frozen while current flowed, bit 2 meter lost, bit 3 meter replaced.
# The charger core copies those bits into the session and stops on a lost meter; it never
# compares readings itself. Pure: readings, flow and a millisecond clock come in.
from errors import CodecError

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

STATUS_OK = const(0)
STATUS_ROLLBACK = const(0x01)
STATUS_FROZEN = const(0x02)
STATUS_LOST = const(0x04)
STATUS_REPLACED = const(0x08)
CARRIED = const(0x09)  # rollback and replacement seen while idle are owed to the next session


class MeterError(CodecError):
    """A reading that could not be taken (meter.py's drivers raise it); `code` a protocol
    error code when the meter sent one."""


class MeterWatch:
    """Watches the readings of one meter. Pure: the caller passes every reading in, with
    whether current flows and a monotonic millisecond clock that does not wrap.

    - lost: `lost_after` consecutive failed reads (bit 2). `lost` tells whether the meter is
      missing right now; the status bit stays set for the session.
    - rollback: a reading below the previous one (bit 0), except across a replacement.
    - frozen: while current flows, the reading has not moved for `frozen_after_ms` (bit 1). The
      clock starts when current starts flowing or the reading last changed, whichever is later.
    - replaced: the meter's identity (serial number or address) differs from the one seen
      before (bit 3).

    `status` collects the bits since `start_session()`; the reference reading and identity
    carry over between sessions (and can be restored after a reboot through the constructor),
    so a swap or rollback while idle is flagged in the next session.
    """

    def __init__(self, lost_after=3, frozen_after_ms=120000, last_wh=None, identity=None):
        if lost_after < 1 or frozen_after_ms < 1:
            raise ValueError("lost_after and frozen_after_ms must be positive")
        self.lost_after = lost_after
        self.frozen_after_ms = frozen_after_ms
        self.last_wh = last_wh
        self.identity = identity
        self.status = STATUS_OK
        self.failures = 0
        self.lost = False
        self.last_error = None
        self._changed_ms = None
        self._flow_since = None

    def start_session(self):
        """Clear the status bits for a new session (references are kept)."""
        self.status = STATUS_OK
        self._changed_ms = None
        self._flow_since = None

    def feed(self, reading, flowing, now_ms, identity=None):
        """Record one read: `reading` is the Wh int, or the MeterError (or None) of a failed
        read. Returns the status bits that became set by this reading (0 when none)."""
        new = 0
        if flowing:
            if self._flow_since is None:
                self._flow_since = now_ms
        else:
            self._flow_since = None
        if isinstance(reading, int) and not isinstance(reading, bool):
            self.failures = 0
            self.lost = False
            replaced = False
            if identity is not None:
                if self.identity is not None and identity != self.identity:
                    replaced = True
                    new |= STATUS_REPLACED
                self.identity = identity
            if self.last_wh is not None and reading < self.last_wh and not replaced:
                new |= STATUS_ROLLBACK
            if self.last_wh is None or reading != self.last_wh or self._changed_ms is None:
                self._changed_ms = now_ms
            self.last_wh = reading
            if flowing:
                since = self._flow_since
                if self._changed_ms > since:
                    since = self._changed_ms
                if now_ms - since >= self.frozen_after_ms:
                    new |= STATUS_FROZEN
        else:
            self.failures += 1
            self.last_error = reading
            if self.failures >= self.lost_after:
                self.lost = True
                new |= STATUS_LOST
        fresh = new & ~self.status
        self.status |= new
        return fresh


class WatchedMeter:
    """The charger's meter as Charger sees it (`read_wh()`), feeding every outcome of every
    read to a MeterWatch. The controller sets `flowing` (contactor closed and the
    vehicle asking) and `now_ms` (ms since the session began, so the watch's clock never
    wraps within a session) before it lets the Charger read. `identify`, when given, returns
    the meter's identity after a good read (e.g. the DL/T 645 address the reply carried)."""

    def __init__(self, driver, watch, identify=None):
        self.driver = driver
        self.watch = watch
        self.identify = identify
        self.flowing = False
        self.now_ms = 0

    def read_wh(self) -> int:
        try:
            wh = self.driver.read_wh()
        except MeterError as e:
            self.watch.feed(e, self.flowing, self.now_ms)
            raise
        ident = self.identify() if self.identify is not None else None
        self.watch.feed(wh, self.flowing, self.now_ms, ident)
        return wh

    def read_serial(self):
        return self.driver.read_serial()
