"""Which chargers are online, from what they publish on their retained status topic
(firmware/core/status.py): a status with "online": true while connected, and the last will, the
same topic with "online": false, that the broker publishes when a charger drops off. Sans-I/O:
the ingest link hands in each message; an empty retained message (a cleared topic) forgets the
charger."""

from __future__ import annotations

import json
import threading

from .. import topics

STATUS_TOPICS = topics.every_charger(topics.STATUS)
MAX_CHARGERS = 100_000  # a charger login publishes only its own status; this only bounds memory


class StatusRefused(ValueError):
    """A status message that says nothing we can count: its reason (a short word) is args[0]."""


def parse_status(topic: str, payload: bytes) -> tuple[str, bool | None]:
    """(charger id, online) of a status message; online is None for a cleared topic."""
    charger = topics.charger_of(topic, topics.STATUS)
    if charger is None:
        raise StatusRefused("bad_topic")
    if not payload:
        return charger, None
    try:
        msg = json.loads(payload)
    except ValueError:
        raise StatusRefused("malformed") from None
    if not isinstance(msg, dict) or msg.get("v") != 1:
        raise StatusRefused("unknown_version")
    if msg.get("charger_id") != charger or not isinstance(msg.get("online"), bool):
        raise StatusRefused("malformed")
    return charger, msg["online"]


class ChargerPresence:
    def __init__(self) -> None:
        self._online: dict[str, bool] = {}
        self._lock = threading.Lock()

    def seen(self, topic: str, payload: bytes) -> str:
        """Takes one status message; the charger it was about. Raises StatusRefused."""
        charger, online = parse_status(topic, payload)
        with self._lock:
            if online is None:
                self._online.pop(charger, None)
            elif charger in self._online or len(self._online) < MAX_CHARGERS:
                self._online[charger] = online
            else:
                raise StatusRefused("too_many")
        return charger

    def online(self) -> int:
        with self._lock:
            return sum(self._online.values())

    def known(self) -> int:
        with self._lock:
            return len(self._online)
