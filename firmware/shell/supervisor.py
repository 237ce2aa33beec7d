# Pure helpers of the device's supervisor loops: retry backoff and the control-loop heartbeat
# that gates the hardware watchdog. Times are millisecond ticks (see clock.ticks_diff).

from clock import ticks_diff


class Backoff:
    """Exponential backoff with jitter: delays of min_ms, 2*min_ms, ... up to max_ms, each
    drawn from [delay/2, delay] so a fleet that lost its network together does not come back
    in lockstep. `rand8` returns a random int 0..255 (random.getrandbits(8) on the device);
    None disables the jitter (tests)."""

    def __init__(self, min_ms: int, max_ms: int, rand8=None):
        if min_ms < 1 or max_ms < min_ms:
            raise ValueError("need 1 <= min_ms <= max_ms")
        self.min_ms = min_ms
        self.max_ms = max_ms
        self._rand8 = rand8
        self._next = min_ms
        self.failures = 0

    def delay(self) -> int:
        """The wait before the next attempt after one more failure."""
        d = self._next
        self._next = min(d * 2, self.max_ms)
        self.failures += 1
        if self._rand8 is not None and d > 1:
            half = d // 2
            d = half + (half * self._rand8()) // 255
        return d

    def reset(self) -> None:
        """A success: the next failure waits min_ms again."""
        self._next = self.min_ms
        self.failures = 0


class Heartbeat:
    """The control loop calls beat(now) every round; the watchdog task feeds the hardware
    watchdog only while alive(now), so a stuck or crashed control loop resets the chip (with
    the contactor relay released by the reset) instead of being kept alive by other tasks."""

    def __init__(self, stale_ms: int):
        if stale_ms < 1:
            raise ValueError("stale_ms must be positive")
        self.stale_ms = stale_ms
        self.last: "int | None" = None
        self.stopped = False

    def beat(self, now_ms: int) -> None:
        self.last = now_ms

    def stop(self) -> None:
        """The control loop gave up (an unexpected error): never feed again."""
        self.stopped = True

    def alive(self, now_ms: int) -> bool:
        if self.stopped or self.last is None:
            return False
        return ticks_diff(now_ms, self.last) < self.stale_ms
