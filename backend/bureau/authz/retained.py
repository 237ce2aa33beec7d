"""What the broker must hold on the bureau's retained topics, and which of them to put right.

The bureau publishes the signed list and tariff as retained messages and reads its own topics
back. Whatever arrives there that is not what it last published (another payload, or an empty
message that erased it) is written again, at most once per `min_interval_s` per topic so that a
client overwriting in a loop cannot make the bureau flood the broker. No MQTT here: the shell
hands in messages and the time, and publishes what `due` returns.
"""

from __future__ import annotations

import threading

MIN_INTERVAL_S = 1.0


class RetainedGuard:
    def __init__(self, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._expected: dict[str, bytes] = {}  # topic -> payload the broker must hold (b"": nothing)
        self._families: list[str] = []  # topic prefixes where anything unpublished must be empty
        self._wrong: set[str] = set()
        self._restored_at: dict[str, float] = {}

    def published(self, topic: str, payload: bytes) -> None:
        """The bureau just published `payload` retained on `topic` (b"" clears it)."""
        with self._lock:
            self._expected.pop(topic, None)  # kept in the order last published: pages before manifest
            self._expected[topic] = payload
            self._wrong.discard(topic)

    def own_family(self, prefix: str) -> None:
        """Every topic below `prefix` is the bureau's: one it never published must stay empty."""
        with self._lock:
            if prefix not in self._families:
                self._families.append(prefix)

    def seen(self, topic: str, payload: bytes) -> bool:
        """A message the broker delivered on a watched topic; True when it must be put right."""
        with self._lock:
            expected = self._expected_for(topic)
            if expected is None or payload == expected:
                self._wrong.discard(topic)
                return False
            self._wrong.add(topic)
            return True

    def due(self, now: float) -> list[tuple[str, bytes]]:
        """(topic, payload) to publish again now; list pages before their manifest, as published."""
        with self._lock:
            ready = [t for t in self._wrong if now - self._restored_at.get(t, float("-inf")) >= self.min_interval_s]
            for t in ready:
                self._wrong.discard(t)
                self._restored_at[t] = now
            order = {t: i for i, t in enumerate(self._expected)}
            return [(t, self._expected_for(t)) for t in sorted(ready, key=lambda t: order.get(t, -1))]

    @property
    def waiting(self) -> bool:
        with self._lock:
            return bool(self._wrong)

    def _expected_for(self, topic: str) -> bytes | None:
        if topic in self._expected:
            return self._expected[topic]
        if any(topic.startswith(p) for p in self._families):
            return b""
        return None  # not ours, or not published yet: no opinion
