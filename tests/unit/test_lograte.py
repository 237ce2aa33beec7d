"""Throttled log lines: one per key per interval, the next one tells how many were held back."""

import logging

from bureau.lograte import ThrottledLog


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_line_per_key_per_interval_with_the_count_held_back(caplog):
    clock = Clock()
    log = ThrottledLog(logging.getLogger("test.lograte"), interval_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.lograte"):
        assert log.info("bad_signature", "rejected %s", "a")
        assert not any(log.info("bad_signature", "rejected %s", i) for i in range(500))
        assert log.info("unknown_charger", "rejected %s", "b")  # another reason has its own budget
        clock.t += 9.9
        assert not log.info("bad_signature", "rejected %s", "c")
        clock.t += 0.2
        assert log.info("bad_signature", "rejected %s", "d")
        clock.t += 10
        assert log.info("bad_signature", "rejected %s", "e")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["rejected a", "rejected b", "rejected d (and 501 more of bad_signature in the 10 s before)",
                     "rejected e"]


def test_the_keys_remembered_are_bounded():
    log = ThrottledLog(logging.getLogger("test.lograte"), clock=Clock(), max_keys=8)
    for i in range(100):
        log.info(f"reason-{i}", "x")
    assert len(log._last) == 8
