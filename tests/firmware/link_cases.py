# Cases of supervisor.Link (the device's connectivity supervisor), plain asserts in plain
# functions so the same file runs under CPython (test_supervisor_link.py) and under the real
# MicroPython unix port (`micropython link_cases.py` prints "ok <n>").
import supervisor
from supervisor import CONNECT, DROP, JOIN, RESOLVE, Backoff, Link

START = (1 << 30) - 5000  # the tick counter wraps during the cases


def _t(ms):
    return (START + ms) % (1 << 30)


class World:
    """What the shell would see: the access point, the resolver, the broker."""

    def __init__(self, host="broker.depot", joins_failing=0, lookups_failing=0, connects_failing=0):
        self.link = Link(host, Backoff(1000, 8000), join_ms=3000, connect_ms=5000)
        self.joins_failing = joins_failing
        self.lookups_failing = lookups_failing
        self.connects_failing = connects_failing
        self.wifi = False
        self.connecting = False
        self.connected = False
        self.done = []  # (ms, action)
        self._join_at = None
        self.ms = 0  # the next step's time

    def run(self, until_ms, every_ms=100, may_block=True):
        while self.ms <= until_ms:
            self.step(self.ms, may_block)
            self.ms += every_ms

    def step(self, ms, may_block=True):
        if self._join_at is not None and ms - self._join_at >= 500:
            self._join_at = None
            if self.joins_failing:
                self.joins_failing -= 1
            else:
                self.wifi = True
        if self.connecting:
            self.connecting = False
            if self.connects_failing:
                self.connects_failing -= 1
            else:
                self.connected = True
        a = self.link.step(_t(ms), self.wifi, self.connecting, self.connected, may_block)
        if a is None:
            return
        self.done.append((ms, a))
        if a == JOIN:
            self._join_at = ms
        elif a == RESOLVE:
            if self.lookups_failing:
                self.lookups_failing -= 1
                self.link.resolve_failed(-2, _t(ms))
            else:
                self.link.resolved("10.0.0.7")
        elif a == CONNECT:
            self.connecting = True
        elif a == DROP:
            self.connecting = self.connected = False

    def times(self, action):
        return [ms for ms, a in self.done if a == action]


def case_one_backoff_across_wifi_dns_and_broker():
    w = World(joins_failing=1, lookups_failing=1, connects_failing=1)
    w.run(30000)
    # join fails (3 s), 1 s backoff, join; lookup fails, 2 s; lookup; connect refused, 4 s
    assert w.times(JOIN) == [0, 4000], w.done
    assert w.times(RESOLVE) == [4500, 6500], w.done
    assert w.times(CONNECT) == [6600, 10700], w.done
    assert w.link.up and w.link.backoff.failures == 0
    assert w.link.take_events() == [("up",)] and w.link.take_events() == []


def case_a_link_that_was_up_is_tried_again_at_once():
    w = World(host="10.0.0.9")
    w.run(2000)
    assert w.link.up and w.times(RESOLVE) == []  # an address needs no lookup
    w.connected = False  # the broker went away
    w.connects_failing = 2
    w.run(12000)
    assert w.times(CONNECT) == [500, 2100, 3200, 5300], w.done  # at once, then 1 s, 2 s
    assert w.link.take_events() == [("up",), ("down", "broker_lost"), ("up",)]


def case_wifi_loss_drops_the_session_and_forgets_the_address():
    w = World()
    w.run(2000)
    assert w.link.up and len(w.times(RESOLVE)) == 1
    w.wifi = False
    w.run(2200)
    assert w.done[-2:] == [(2100, DROP), (2200, JOIN)], w.done  # the session goes, then a new join
    w.run(6000)
    assert w.link.up and len(w.times(JOIN)) == 2 and len(w.times(RESOLVE)) == 2
    assert ("down", "wifi_down") in w.link.take_events()


def case_no_lookup_while_energy_flows():
    w = World()
    w.run(3000, may_block=False)
    assert w.times(JOIN) == [0] and w.times(RESOLVE) == [] and not w.link.up
    assert w.link.on_network
    w.run(4000)
    assert w.times(RESOLVE) == [3100] and w.link.up


def case_a_silent_attempt_is_dropped_and_retried():
    w = World(host="10.0.0.9")
    w.run(600)
    w.connecting = True
    w.connected = False
    # the broker never answers: the session stays "connecting"
    link = w.link
    link.state = supervisor.CONNECTING
    link._since = _t(600)
    assert link.step(_t(5000), True, True, False) is None
    assert link.step(_t(5600), True, True, False) == DROP and link.reason == "broker_timeout"
    assert link.step(_t(5700), True, False, False) is None  # backoff
    assert link.step(_t(6700), True, False, False) == CONNECT


def case_backoff_grows_to_its_ceiling_and_resets_when_up():
    w = World(host="10.0.0.9", connects_failing=6)
    w.run(60000)
    gaps = [b - a for a, b in zip(w.times(CONNECT), w.times(CONNECT)[1:])]
    assert gaps == [1100, 2100, 4100, 8100, 8100, 8100], gaps
    assert w.link.up and w.link.backoff.failures == 0


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


def main():
    for case in CASES:
        case()
    print("ok %d" % len(CASES))


if __name__ == "__main__":
    main()
