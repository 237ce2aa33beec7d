# The charger's side of MQTT above the client: receipts out of the flash outbox and their
# acks back into it, the retained status, the enrollment of first boot and commands. Runs the
# same on the device (driven by an asyncio task) and in host simulations; the transport is the
# firmware's own mqtt_client.MQTTClient (or anything with its poll/publish/subscribe/connected).
#
# Delivery: after every (re)connection the Charger forgets what it had sent on the old one
# (connection_up), so every receipt still in the outbox goes out again; the bureau answers a
# byte-identical resend with the same ack, and only an ack removes a receipt from flash.
#
# The last will (status with "state": "offline", retained) must be given to the client when
# it is made: `will(charger_id, firmware)`.

from mqtt_codec import MQTTError
from mqtt_session import CONNECT_FAILED, CONNECTED_EVENT, DISCONNECTED_EVENT, MESSAGE, PUBLISHED
from clock import ticks_diff
import status


def will(charger_id: str, firmware: str):
    """(topic, payload, qos, retain) of the last will, for MQTTClient(will=...)."""
    return (status.topic(charger_id, "status"), status.offline_message(charger_id, firmware), 1, True)


class Uplink:
    def __init__(self, client, charger, controller, provisioning, clock, firmware: str, on_stop=None,
                 status_every_ms: int = 30000):
        self.client = client
        self.charger = charger
        self.controller = controller
        self.provisioning = provisioning
        self.clock = clock
        self.firmware = firmware
        self.on_stop = on_stop  # on_stop(session_id hex): a remote stop command arrived
        self.status_every_ms = status_every_ms
        cid = charger.charger_id
        self.status_topic = status.topic(cid, "status")
        self.cmd_topic = status.topic(cid, "cmd")
        self.up = False
        self.connections = 0
        self.acked = 0
        self.rejected = 0
        self.last_reason: "str | None" = None  # why the last connection ended or attempt failed
        self._shown: "tuple | None" = None  # (state, error) of the last status published
        self._status_at: "int | None" = None
        # Charger.due compares times by plain subtraction, so it gets a counter that never
        # wraps (ticks_ms wraps every 12.4 days on the ESP32); it grows into a long int after
        # that, which costs an allocation per step of this task, not of the control loop.
        self._mono = 0
        self._last_now: "int | None" = None
        client.subscribe(charger.reply_topic, 1)
        client.subscribe(self.cmd_topic, 1)

    def step(self, now_ms: int) -> None:
        """Poll the client, handle what arrived, publish what is due. Never blocks (beyond
        what the client's poll does)."""
        if self._last_now is not None:
            self._mono += ticks_diff(now_ms, self._last_now)
        self._last_now = now_ms
        for ev in self.client.poll(now_ms):
            kind = ev[0]
            if kind == CONNECTED_EVENT:
                self.up = True
                self.connections += 1
                self.charger.connection_up()
                self._shown = None  # the retained status goes out again at once
            elif kind == DISCONNECTED_EVENT or kind == CONNECT_FAILED:
                self.up = False
                self.last_reason = ev[1]
            elif kind == MESSAGE:
                self._message(ev[1], ev[2])
            elif kind == PUBLISHED:
                self.provisioning.acked(ev[1])
        if not self.client.connected:
            return
        try:
            if self.provisioning.needed():
                self.provisioning.published(self.client.publish(
                    self.provisioning.topic, self.provisioning.payload, 1, True))
            self._status(now_ms)
            for topic, env in self.charger.due(self._mono):
                self.client.publish(topic, env, 1)
        except MQTTError as e:
            # inflight_full / backlog_full: the rest waits for the next step (an unsent receipt
            # is resent after Charger's RESEND_MS at the latest)
            self.last_reason = e.reason

    def _message(self, topic, payload):
        if topic == self.charger.reply_topic:
            result, _seq = self.charger.on_reply(payload)
            if result == "ack":
                self.acked += 1
            elif result == "reject":
                self.rejected += 1
        elif topic == self.cmd_topic:
            cmd = status.parse_command(payload)
            if cmd is not None and cmd[0] == "stop" and self.on_stop is not None:
                self.on_stop(cmd[1])

    def _status(self, now_ms):
        ctl = self.controller
        shown = (ctl.display_state(), ctl.error)
        if shown == self._shown and self._status_at is not None \
                and ticks_diff(now_ms, self._status_at) < self.status_every_ms:
            return
        self.client.publish(self.status_topic, self.status_payload(), 1, True)
        self._shown = shown
        self._status_at = now_ms

    def status_payload(self) -> bytes:
        ctl = self.controller
        s = self.charger.session
        a = self.charger.authz
        return status.status_message(
            self.charger.charger_id, ctl.display_state(), ctl.watch.last_wh, self.firmware, ctl.error,
            self.clock.now(), self.clock.synced(),
            s.energy_wh if s is not None else None,
            s.amount_fen(self.charger.tariff) if s is not None else None,
            self.charger.refused_acks, a.refused_replies if a is not None else None, self.charger.refused_rejects)
