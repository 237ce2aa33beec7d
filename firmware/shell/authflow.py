# The glue between the card reader, the bureau's MQTT messages, authz.Authz and the charge point
# controller: the same code on the ESP32 (firmware/device/app.py) and in host simulations
# (firmware/host/chargerhost/simcontroller.py). No I/O of its own beyond the MQTT client it is
# given (publish / subscribe / connected / poll) and the controller calls.
#
#   flow = AuthFlow(authz, charger, controller, client, ticks_ms, log)
#   uplink = Uplink(flow.client, ...)     the client as the uplink sees it: messages on the reply,
#                                         list and tariff topics reach the flow as well
#   flow.card(uid, now_ms)                a card came to the reader (rc522.RC522.poll)
#   flow.poll(now_ms)                     often (a few times a second): answers not in time fall
#                                         back to the offline list; unused holds are given back
#
# What happens (docs/authorization.md):
# - A tap: the controller shows "authorizing"; online, the request goes out on the auth topic and
#   the bureau's reply decides; offline (or no answer within authz.ONLINE_TIMEOUT_MS, or the node
#   answered busy/internal_error) the signed offline list decides. Accept ->
#   controller.authorize(method, id_token, wallet_id, authorized_fen, auth_ref), which puts the
#   decision and its basis into the receipt; reject -> controller.deny(reason).
# - A tap of the card that started the running session stops it (reason L); any other card is
#   ignored while a session runs.
# - A phone start (a "start" command on the reply topic) is redeemed with an online request and
#   then takes the same path; it is never decided offline.
# - An online accept the controller cannot take, or one it drops before a session started
#   (plug-in timeout, stop button, fault), is released at the bureau so the hold does not
#   block the wallet until it expires.
# - The signed offline list (ev/v1/bureau/authlist/#) goes to authz; the signed tariff
#   (ev/v1/bureau/tariff) to Charger.on_signed_tariff. What must not be used is logged, counted
#   and dropped.
import json

import authz as authz_mod
import topics
from controller import FAULTED, UNAVAILABLE
from mqtt_codec import MQTTError
from mqtt_session import MESSAGE

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_ONLINE_PREFIX = "auth:"
_PUBLISH_QOS = const(1)


class TappedClient:
    """The MQTT client with the flow listening in: what `poll` returns goes on to its caller (the
    uplink) unchanged, and every message is shown to the flow first."""

    def __init__(self, client, flow):
        self._client = client
        self._flow = flow

    @property
    def connected(self):
        return self._client.connected

    def poll(self, now=None, wait_ms=0):
        events = self._client.poll(now, wait_ms)
        for ev in events:
            if ev[0] == MESSAGE:
                self._flow.on_message(ev[1], ev[2])
        return events

    def publish(self, topic, payload, qos=0, retain=False):
        return self._client.publish(topic, payload, qos, retain)

    def subscribe(self, topic_filter, qos=0):
        return self._client.subscribe(topic_filter, qos)

    def connect(self, now=None):
        return self._client.connect(now)

    def abort(self, reason="aborted", now=None):
        return self._client.abort(reason, now)

    def close(self):
        return self._client.close()


class AuthFlow:
    def __init__(self, authz, charger, controller, client, ticks_ms, log=None):
        self.authz = authz
        self.charger = charger
        self.ctl = controller
        self.mqtt = client
        self.ticks_ms = ticks_ms
        self._log = log
        self.client = TappedClient(client, self)
        self.last = None  # the last decision (dict of authz)
        self.decisions = 0
        self.refused = 0  # list pages, manifests and tariffs refused
        self.last_refusal = None  # (topic, reason)
        self.released = 0
        self._held = None  # (auth_ref, controller.sessions) of an online accept not yet in a session
        for topic, qos in authz.subscriptions():
            client.subscribe(topic, qos)

    def log(self, msg):
        if self._log is not None:
            self._log(msg)

    @property
    def online(self):
        return self.mqtt.connected

    # ---- inputs ------------------------------------------------------------------------

    def card(self, uid, now_ms):
        """A card at the reader (UID, upper-case hex)."""
        if self.ctl.state == FAULTED or self.ctl.state == UNAVAILABLE:
            self.log("card %s ignored: charge point %s (%s)" % (uid, self.ctl.state, self.ctl.error))
            return
        s = self.charger.session
        if s is not None:
            if s.d["auth"]["id_token"] == uid:
                self.ctl.stop_request("L", now_ms)  # the driver ends the session with the card
            else:
                self.log("card %s ignored: a session is running" % uid)
            return
        self.ctl.authorizing(now_ms)
        online = self.online
        self._run(self.authz.card_tap(uid, self.charger.clock.now(), now_ms, online, self.charger), now_ms)

    def on_message(self, topic, payload):
        """A message that arrived on one of the charger's subscriptions."""
        now_ms = self.ticks_ms()
        now_s = self.charger.clock.now()
        try:
            if topic == self.authz.reply_topic:
                asked = len(self.authz.pending)
                actions = self.authz.on_reply(payload, now_s, now_ms, self.charger)
                if len(self.authz.pending) > asked:
                    self.ctl.authorizing(now_ms)  # a phone start is being redeemed
                self._run(actions, now_ms)
            elif topic == topics.TARIFF_TOPIC:
                result = self.charger.on_signed_tariff(payload, self.authz)
                if result is not None:
                    self.log("tariff push: %s" % result)
            elif topic.startswith(topics.LIST_PREFIX):
                result = self.authz.on_bureau_message(topic, payload, now_s)
                if result == "installed":
                    self.log("offline list v%d installed" % self.authz.manifest["list_version"])
        except authz_mod.AuthzError as e:
            self.refused += 1
            self.last_refusal = (topic, e.reason)
            self.log("refused %s: %s" % (topic, e))

    def poll(self, now_ms):
        self._run(self.authz.poll(self.charger.clock.now(), now_ms, self.charger), now_ms)
        self._check_held()

    # ---- actions -----------------------------------------------------------------------

    def _run(self, actions, now_ms):
        for a in actions:
            kind = a[0]
            if kind == "publish":
                self._publish(a[1], a[2], now_ms)
            elif kind == "decision":
                self._decide(a[1], now_ms)
            elif kind == "event":
                self.log("authz: %r" % (a[1],))

    def _publish(self, topic, payload, now_ms):
        try:
            self.mqtt.publish(topic, payload, _PUBLISH_QOS)
        except MQTTError as e:
            # not sent: a card request is decided from the list at once, a phone start refused
            self.log("auth publish: %s" % e.reason)
            req = _req_of(payload)
            p = self.authz.pending.pop(req, None) if req is not None else None
            if p is None:
                return
            if p[0] == "card":
                self._decide(self.authz.offline(p[1], self.charger.clock.now(), self.charger), now_ms)
            else:
                self.ctl.deny("unreachable", now_ms)

    def _decide(self, d, now_ms):
        self.last = d
        self.decisions += 1
        if d["decision"] != "accept":
            self.ctl.deny(d["reason"], now_ms)
            return
        ref = d["auth_ref"]
        ok = self.ctl.authorize(d["method"], d["id_token"], d["wallet_id"], d["authorized_fen"], ref, now_ms)
        online = ref.startswith(_ONLINE_PREFIX)
        if not ok:
            if online:
                self._release(ref, now_ms)
            return
        if self._held is not None:
            self._release(self._held[0], now_ms)  # replaced by this one before it was used
        self._held = (ref, self.ctl.sessions) if online else None

    def _check_held(self):
        """An online accept the controller no longer holds and no session took: give it back."""
        h = self._held
        if h is None:
            return
        a = self.ctl.auth
        if a is not None and a[4] == h[0]:
            return  # still waiting for the vehicle
        s = self.charger.session
        if (s is not None and s.d["auth"]["auth_ref"] == h[0]) or self.ctl.sessions != h[1]:
            self._held = None  # a session started on it: its receipt ends the hold
            return
        self._held = None
        self._release(h[0], self.ticks_ms())

    def _release(self, ref, now_ms):
        self.released += 1
        a = self.authz.release(ref)
        try:
            self.mqtt.publish(a[1], a[2], _PUBLISH_QOS)  # QoS 1: goes out after a reconnect
        except MQTTError as e:
            self.log("release %s not sent (%s): it expires at the bureau" % (ref, e.reason))


def _req_of(payload):
    # the request id of a request authz built
    try:
        return json.loads(payload).get("req")
    except (ValueError, AttributeError):
        return None
