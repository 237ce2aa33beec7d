# The charger's MQTT topics, v1 (docs/broker.md): the one place the device builds them. The
# bureau has its own (backend/bureau/topics.py); tests/unit/test_topics.py holds both to
# tests/vectors/topics.json. Runs under MicroPython and CPython.
#
# A charger publishes only below its own ev/v1/charger/<id>/ (the broker's ACL):
#   receipt  signed receipts, QoS 1            auth    authorization requests
#   status   retained state and last will      enroll  retained public key for enrollment
# and reads:
#   reply    the bureau's acks, rejects and authorization replies
#   cmd      commands (a remote stop)
#   ev/v1/bureau/tariff and ev/v1/bureau/authlist/# (retained, signed by the bureau)

CHARGER_PREFIX = "ev/v1/charger/"
BUREAU_PREFIX = "ev/v1/bureau/"
TARIFF_TOPIC = BUREAU_PREFIX + "tariff"
LIST_PREFIX = BUREAU_PREFIX + "authlist/"
LIST_TOPICS = LIST_PREFIX + "#"
MANIFEST_TOPIC = LIST_PREFIX + "manifest"
PAGE_TOPIC_PREFIX = LIST_PREFIX + "page/"


def charger_topic(charger_id, leaf):
    """ev/v1/charger/<charger_id>/<leaf>."""
    return CHARGER_PREFIX + charger_id + "/" + leaf


def receipt(charger_id):
    return charger_topic(charger_id, "receipt")


def reply(charger_id):
    return charger_topic(charger_id, "reply")


def auth(charger_id):
    return charger_topic(charger_id, "auth")


def status(charger_id):
    return charger_topic(charger_id, "status")


def enroll(charger_id):
    return charger_topic(charger_id, "enroll")


def cmd(charger_id):
    return charger_topic(charger_id, "cmd")
