# Pure helpers of the device's supervisor loops: retry backoff, the connectivity supervisor
# (Wi-Fi, the broker's address and the broker session as one path) and the control-loop
# heartbeat that gates the hardware watchdog. Times are millisecond ticks (see clock.ticks_diff).

from clock import ticks_add, ticks_diff

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x


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


# Link actions: what the shell does next (one at most per step)
JOIN = const(1)      # wlan.connect(ssid, password): start associating
RESOLVE = const(2)   # getaddrinfo(host) (blocks): then resolved(ip) or resolve_failed(detail)
CONNECT = const(3)   # client.connect(ip): open a broker session
DROP = const(4)      # client.abort(reason): the session cannot live (no Wi-Fi, attempt too long)

# Link states
OFFLINE = "offline"        # nothing running; an attempt starts when the backoff allows
JOINING = "joining"        # association with the access point running
JOINED = "joined"          # on the network, no broker session yet
CONNECTING = "connecting"  # broker session being opened (TCP, CONNECT, CONNACK)
UP = "up"                  # broker session open: receipts and authorizations flow


def is_ip(host):
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


class Link:
    """One path to the bureau: Wi-Fi, the broker's address, the broker session. Sans-I/O: the
    shell tells `step` what it sees (Wi-Fi joined, the broker session connecting or up, whether
    it may block now) and does the one action returned, so there is one idempotent "ensure up"
    step, one backoff for the whole path (reset only when the broker session is up), and one
    list of up/down events (("up",), ("down", reason)) for the rest of the device.

    A failure anywhere (association timed out, the name did not resolve, the broker refused or
    went silent) waits the backoff, then the path is walked again from where it broke. A link
    that was up and went down is tried again at once. A host name is resolved once per
    association (blocking, so only while `may_block`), an IP address never."""

    def __init__(self, host, backoff, join_ms=15000, connect_ms=30000):
        self.host = host
        self.backoff = backoff
        self.join_ms = join_ms
        self.connect_ms = connect_ms
        self.state = OFFLINE
        self.ip = host if is_ip(host) else None
        self.reason = None      # why the path last broke
        self.events = []        # up/down events since the shell last took them
        self.attempts = 0       # attempts at any stage (join, resolve, connect)
        self._since = 0         # start of the running join or connect (ticks)
        self._next = None       # no new attempt before this tick (backoff)

    @property
    def up(self):
        return self.state == UP

    @property
    def on_network(self):
        """Associated with the access point (NTP and name lookups can work)."""
        return self.state == JOINED or self.state == CONNECTING or self.state == UP

    def take_events(self):
        ev = self.events
        self.events = []
        return ev

    def step(self, now, wifi, connecting, connected, may_block=True):
        """The next action (JOIN, RESOLVE, CONNECT, DROP) or None. `wifi`: the station is
        associated; `connecting`/`connected`: the broker session's state."""
        st = self.state
        if st == UP:
            if wifi and connected:
                return None
            self._down("wifi_down" if not wifi else "broker_lost", now, retry_now=True)
            st = self.state
        if not wifi:
            if connecting or connected:
                return DROP
            if self.host != self.ip:
                self.ip = None  # another network may hand out another resolver
            if st == JOINING:
                if ticks_diff(now, self._since) < self.join_ms:
                    return None
                self._fail("wifi_join_timeout", now)
                return None
            if self._waiting(now):
                return None
            self.state = JOINING
            self._since = now
            self.attempts += 1
            return JOIN
        if connected:
            self.state = UP
            self.reason = None
            self.backoff.reset()
            self.events.append(("up",))
            return None
        if connecting:
            if st == CONNECTING and ticks_diff(now, self._since) >= self.connect_ms:
                self._fail("broker_timeout", now)
                return DROP
            return None
        if st == CONNECTING:  # the attempt ended without a session
            self._fail("broker_unreachable", now)
            return None
        if st == JOINING or st == OFFLINE:
            self.state = JOINED
        if self._waiting(now):
            return None
        if self.ip is None:
            if not may_block:
                return None
            self.attempts += 1
            return RESOLVE
        self.state = CONNECTING
        self._since = now
        self.attempts += 1
        return CONNECT

    def resolved(self, ip):
        self.ip = ip

    def resolve_failed(self, detail, now):
        self._fail("dns_failed:%s" % (detail,), now)

    def _waiting(self, now):
        return self._next is not None and ticks_diff(now, self._next) < 0

    def _fail(self, reason, now):
        self.reason = reason
        self.state = OFFLINE if reason == "wifi_join_timeout" else JOINED
        self._next = ticks_add(now, self.backoff.delay())

    def _down(self, reason, now, retry_now=False):
        self.reason = reason
        self.state = JOINED if reason == "broker_lost" else OFFLINE
        self._next = None if retry_now else ticks_add(now, self.backoff.delay())
        self.events.append(("down", reason))
