"""Every MQTT topic of the bureau, version 1 (docs/broker.md): the one place the backend builds
and parses them. The charger builds the same strings in firmware/core/topics.py; both are held
to tests/vectors/topics.json by tests/unit/test_topics.py.

Below its own ev/v1/charger/<id>/ a charger publishes
    receipt  signed receipts, QoS 1            auth    authorization requests and releases
    status   retained state and last will      enroll  retained public key for enrollment
and reads
    reply    the bureau's acks, rejects and authorization replies
    cmd      commands (a remote stop)
The bureau publishes, retained and signed, ev/v1/bureau/tariff and ev/v1/bureau/authlist/...
(a manifest and numbered pages).
"""

from __future__ import annotations

from .ledger.tx import ID_RE

VERSION = 1
ROOT = f"ev/v{VERSION}/"
CHARGER_PREFIX = ROOT + "charger/"
BUREAU_PREFIX = ROOT + "bureau/"
BUREAU_ALL = BUREAU_PREFIX + "#"

TARIFF = BUREAU_PREFIX + "tariff"
LIST_PREFIX = BUREAU_PREFIX + "authlist/"
LIST_ALL = LIST_PREFIX + "#"
LIST_MANIFEST = LIST_PREFIX + "manifest"
LIST_PAGE_PREFIX = LIST_PREFIX + "page/"

# the leaves below a charger's own prefix
RECEIPT, AUTH, STATUS, ENROLL, REPLY, CMD = "receipt", "auth", "status", "enroll", "reply", "cmd"
CHARGER_PUBLISHES = (RECEIPT, AUTH, STATUS, ENROLL)
CHARGER_READS = (REPLY, CMD)


def charger_topic(charger_id: str, leaf: str) -> str:
    """ev/v1/charger/<charger_id>/<leaf>."""
    return f"{CHARGER_PREFIX}{charger_id}/{leaf}"


def receipt(charger_id: str) -> str:
    return charger_topic(charger_id, RECEIPT)


def auth(charger_id: str) -> str:
    return charger_topic(charger_id, AUTH)


def status(charger_id: str) -> str:
    return charger_topic(charger_id, STATUS)


def enroll(charger_id: str) -> str:
    return charger_topic(charger_id, ENROLL)


def reply(charger_id: str) -> str:
    return charger_topic(charger_id, REPLY)


def cmd(charger_id: str) -> str:
    return charger_topic(charger_id, CMD)


def list_page(index: int) -> str:
    return f"{LIST_PAGE_PREFIX}{index}"


def every_charger(leaf: str) -> str:
    """The subscription filter (and ACL topic) for `leaf` of every charger: ev/v1/charger/+/<leaf>."""
    return charger_topic("+", leaf)


def acl_pattern(leaf: str) -> str:
    """The mosquitto ACL pattern for `leaf` of the logged-in charger (%u: its user name, the charger id)."""
    return charger_topic("%u", leaf)


def charger_of(topic: str, leaf: str) -> str | None:
    """The charger id of ev/v1/charger/<id>/<leaf>, or None when `topic` is not that topic of a
    well-formed charger id (1-32 of A-Z a-z 0-9 . _ -)."""
    suffix = "/" + leaf
    if not topic.startswith(CHARGER_PREFIX) or not topic.endswith(suffix):
        return None
    charger = topic[len(CHARGER_PREFIX):-len(suffix)]
    return charger if ID_RE.match(charger) else None
