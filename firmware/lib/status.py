# What the charger tells the world besides receipts: its retained status, the last will that
# replaces the status when the charger drops off, and the enrollment message of first boot.
# Pure: JSON in UTF-8 bytes, every message versioned with "v": 1.
#
# Topics (the broker's ACL lets a charger publish only below its own ev/v1/charger/<id>/):
#   ev/v1/charger/<id>/status   retained; {"v":1,"charger_id":..,"state":..,"online":true,
#                               "meter_wh":..,"firmware":..,"error":..,"time":..,"time_synced":..,
#                               "session":{"energy_wh":..,"amount_fen":..} or null,
#                               "refused":{"acks":{reason:n},"rejects":{reason:n},
#                                          "auth_replies":{reason:n}}}
#                               ("refused": replies ignored since boot: unsigned, forged, foreign,
#                               replayed; auth_replies counts release replies too; see
#                               docs/receipt-v1.md and docs/authorization.md)
#                               the last will is the same topic with "state":"offline"
#   ev/v1/charger/<id>/enroll   retained; {"v":1,"charger_id":..,"public_key":<64 hex>,
#                               "meter_serial":..,"firmware":..}
#   ev/v1/charger/<id>/cmd      commands to the charger; {"v":1,"type":"stop","session_id":<hex>}
#                               stops that session (remote stop, reason R). Unsigned: no broker
#                               login may publish here (docs/broker.md, "Commands"); the bureau
#                               sends none
import binascii
import json

STATE_OFFLINE = "offline"
ENROLL_FILE = "enrolled"  # flash: the public key (hex) whose enrollment the broker acknowledged


def topic(charger_id: str, leaf: str) -> str:
    return "ev/v1/charger/%s/%s" % (charger_id, leaf)


def status_message(charger_id: str, state: str, meter_wh, firmware: str, error=None, now=None,
                   synced: bool = False, energy_wh=None, amount_fen=None, refused_acks=None,
                   refused_auth_replies=None, refused_rejects=None) -> bytes:
    """The retained status: state of the charge point, the meter's import register (Wh, None
    when it has not been read), the firmware version, the current error, the charger's clock."""
    session = None
    if energy_wh is not None:
        session = {"energy_wh": energy_wh, "amount_fen": amount_fen}
    return json.dumps({
        "v": 1,
        "charger_id": charger_id,
        "state": state,
        "online": state != STATE_OFFLINE,
        "meter_wh": meter_wh,
        "firmware": firmware,
        "error": error,
        "time": now,
        "time_synced": bool(synced),
        "session": session,
        "refused": {"acks": refused_acks or {}, "rejects": refused_rejects or {},
                    "auth_replies": refused_auth_replies or {}},
    }).encode()


def offline_message(charger_id: str, firmware: str) -> bytes:
    """The last will: the broker publishes it (retained) when the charger vanishes."""
    return status_message(charger_id, STATE_OFFLINE, None, firmware)


def enroll_message(charger_id: str, public_key: bytes, meter_serial: str, firmware: str) -> bytes:
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return json.dumps({
        "v": 1,
        "charger_id": charger_id,
        "public_key": binascii.hexlify(public_key).decode(),
        "meter_serial": meter_serial,
        "firmware": firmware,
    }).encode()


def parse_command(payload):
    """A message on the cmd topic -> ("stop", session_id hex) or None when it is not one we
    know (unknown versions and types are ignored, never guessed at)."""
    try:
        msg = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(msg, dict) or msg.get("v") != 1:
        return None
    if msg.get("type") == "stop":
        sid = msg.get("session_id")
        if isinstance(sid, str) and len(sid) == 32:
            return ("stop", sid)
    return None


class Provisioning:
    """First-boot enrollment: the charger publishes its public key (retained) until the broker
    acknowledged it once for this key; the acknowledged key is remembered on flash, so a new
    key (a re-flashed device) is announced again and an old one is not re-sent every boot."""

    def __init__(self, flash, charger_id: str, public_key: bytes, meter_serial: str, firmware: str):
        self.flash = flash
        self.public_key = public_key
        self.topic = topic(charger_id, "enroll")
        self.payload = enroll_message(charger_id, public_key, meter_serial, firmware)
        # The QoS 1 publish waiting for its PUBACK. The MQTT session re-sends an unacknowledged
        # QoS 1 publish after a reconnect under the same packet id, so the id stays valid.
        self.packet_id: "int | None" = None

    def needed(self) -> bool:
        """True while this key's enrollment was never acknowledged and none is in flight."""
        if self.packet_id is not None:
            return False
        done = self.flash.read(ENROLL_FILE)
        return done is None or done != binascii.hexlify(self.public_key)

    def published(self, packet_id: int) -> None:
        self.packet_id = packet_id

    def acked(self, packet_id: int) -> bool:
        """A PUBACK arrived; True when it was the enrollment's."""
        if self.packet_id is None or packet_id != self.packet_id:
            return False
        self.flash.write_atomic(ENROLL_FILE, binascii.hexlify(self.public_key))
        self.packet_id = None
        return True
