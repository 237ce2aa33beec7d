"""MQTT 3.1.1 client session state machine (sans-I/O; MicroPython and CPython alike).

No socket and no clock: the shell opens a transport, calls `connect(now_ms)`, hands every
received chunk to `receive(data, now_ms)`, calls `tick(now_ms)` regularly, sends whatever
`data_to_send()` returns and closes the transport whenever `state` becomes DISCONNECTED.
`now_ms` is any millisecond counter (for example `time.ticks_ms()`): differences are taken
modulo 2**30 like MicroPython's `ticks_diff`, so wrap-around is harmless as long as the
intervals compared stay under about six days (the keepalive is at most 18 h).

What the session keeps across connections:
- QoS 1 publishes not yet acknowledged ("in flight", at most `max_inflight`), re-sent in
  their original order with their original packet ids after every CONNACK, with DUP set
  when they went out before (MQTT 3.1.1 section 4.4);
- the subscriptions, re-sent after a CONNACK without session present (and any whose SUBACK
  was still missing).

Events are tuples whose first item is the kind:
    (CONNECTED, session_present)
    (CONNECT_FAILED, reason)     an attempt ended before it was accepted
    (DISCONNECTED, reason)       an accepted connection ended
    (MESSAGE, topic, payload, qos, retain, dup)
    (PUBLISHED, packet_id)       a QoS 1 publish was acknowledged
    (SUBSCRIBED, topic_filter, granted_qos)   granted_qos 0x80 means refused (not retried)
Reasons are short strings: "closed", "connect_timeout", "ping_timeout", a CONNACK refusal
("not_authorized", ...), a decoder reason ("too_large", "bad_flags", ...), a session protocol
reason ("unexpected_connack", "unexpected_publish", "bad_suback") or the shell's own reason
passed to `connection_lost()`.
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from mqtt_codec import (
    CONNACK, CONNACK_REASONS, DEFAULT_MAX_PACKET, DISCONNECT_FRAME, PINGREQ_FRAME, PINGRESP,
    PUBACK, PUBLISH, SUBACK, SUBACK_FAILURE, Decoder, MQTTError, encode_connect, encode_puback,
    encode_publish, encode_subscribe, mark_dup,
)

from ticks import ticks_diff  # one wrap-safe difference for the whole firmware

# Session states.
DISCONNECTED = const(0)
CONNECTING = const(1)
CONNECTED = const(2)

# Event kinds.
CONNECTED_EVENT = "connected"
CONNECT_FAILED = "connect_failed"
DISCONNECTED_EVENT = "disconnected"
MESSAGE = "message"
PUBLISHED = "published"
SUBSCRIBED = "subscribed"


# Subscription entry states.
_SUB_TODO = const(0)     # to be sent at the next CONNACK
_SUB_SENT = const(1)     # SUBSCRIBE sent, SUBACK awaited
_SUB_ACKED = const(2)


class Session:
    """One MQTT client's protocol state. See the module docstring for the contract."""

    def __init__(self, client_id, keepalive=60, clean_session=True, username=None,
                 password=None, will=None, max_packet=DEFAULT_MAX_PACKET, max_inflight=16,
                 connect_timeout_ms=10000, ping_timeout_ms=None):
        """`will` is None or (topic, payload, qos, retain); `keepalive` in seconds (0 = off);
        `ping_timeout_ms` defaults to half the keepalive, capped at 30 s."""
        if will is not None:
            will_topic, will_payload, will_qos, will_retain = will
        else:
            will_topic, will_payload, will_qos, will_retain = None, b"", 0, False
        # Encoding once validates every argument now and is reused on each reconnect.
        self._connect_frame = encode_connect(
            client_id, clean_session, keepalive, username, password,
            will_topic, will_payload, will_qos, will_retain)
        if max_inflight < 1 or max_inflight > 65535:
            raise ValueError("max_inflight %r out of range 1..65535" % (max_inflight,))
        if connect_timeout_ms < 1:
            raise ValueError("connect_timeout_ms must be positive")
        self.client_id = client_id
        self.clean_session = clean_session
        self.keepalive_ms = keepalive * 1000
        if ping_timeout_ms is None:
            ping_timeout_ms = min(self.keepalive_ms // 2, 30000) or 1000
        if ping_timeout_ms < 1:
            raise ValueError("ping_timeout_ms must be positive")
        self.ping_timeout_ms = ping_timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.max_inflight = max_inflight
        self.state = DISCONNECTED
        self._decoder = Decoder(max_packet)
        self._out = []
        self._unstamped = False       # frames queued since the send time was last stamped
        self._inflight = []           # [packet_id, frame, sent_before], in publish order
        self._subs = []               # [topic_filter, qos, state]
        self._pending_subs = {}       # SUBSCRIBE packet id -> [topic_filter, ...]
        self._next_id = 1
        self._started = 0
        self._last_sent = 0
        self._last_recv = 0
        self._ping_sent = None

    # ------------------------------------------------------------ queries

    @property
    def connected(self):
        return self.state == CONNECTED

    @property
    def inflight(self):
        """Number of QoS 1 publishes awaiting PUBACK."""
        return len(self._inflight)

    def inflight_ids(self):
        return [entry[0] for entry in self._inflight]

    def subscriptions(self):
        """[(topic_filter, qos)] that are restored on reconnect."""
        return [(s[0], s[1]) for s in self._subs]

    def data_to_send(self):
        """All bytes queued for the transport, in order (b"" when none)."""
        if not self._out:
            return b""
        out = self._out
        self._out = []
        if len(out) == 1:
            return bytes(out[0])
        return b"".join(out)

    def ms_until_tick(self, now_ms):
        """How long the shell may wait before `tick()` has work (None when disconnected)."""
        if self.state == DISCONNECTED:
            return None
        if self.state == CONNECTING:
            return max(0, self.connect_timeout_ms - ticks_diff(now_ms, self._started))
        if not self.keepalive_ms:
            return None
        if self._ping_sent is not None:
            return max(0, self.ping_timeout_ms - ticks_diff(now_ms, self._ping_sent))
        idle_sent = 0 if self._unstamped else ticks_diff(now_ms, self._last_sent)
        idle = max(idle_sent, ticks_diff(now_ms, self._last_recv))
        return max(0, self.keepalive_ms - idle)

    # ------------------------------------------------------------ commands

    def connect(self, now_ms):
        """A fresh transport is open: queue CONNECT and wait for CONNACK."""
        if self.state != DISCONNECTED:
            raise MQTTError("bad_state", "connect() while a connection is open")
        self._decoder.reset()
        self._out = [self._connect_frame]
        self._unstamped = False
        self.state = CONNECTING
        self._started = now_ms
        self._last_sent = now_ms
        self._last_recv = now_ms
        self._ping_sent = None

    def publish(self, topic, payload, qos=0, retain=False):
        """Queue a PUBLISH; return its packet id (0 at QoS 0).

        QoS 1 is accepted while disconnected (sent after the next CONNACK); QoS 0 needs a
        connection. Raises MQTTError "not_connected" or "inflight_full".
        """
        if qos == 0:
            if self.state != CONNECTED:
                raise MQTTError("not_connected", "QoS 0 publish to %r while not connected" % (topic,))
            self._queue(encode_publish(topic, payload, 0, retain))
            return 0
        if qos != 1:
            raise ValueError("QoS %r not supported (0 or 1)" % (qos,))
        if len(self._inflight) >= self.max_inflight:
            raise MQTTError("inflight_full", "%d QoS 1 publishes await PUBACK" % len(self._inflight))
        packet_id = self._allocate_id()
        frame = encode_publish(topic, payload, 1, retain, False, packet_id)
        entry = [packet_id, frame, False]
        self._inflight.append(entry)
        if self.state == CONNECTED:
            self._queue(frame)
            entry[2] = True
        return packet_id

    def subscribe(self, topic_filter, qos=0):
        """Subscribe now if connected, else at the next CONNACK; kept for reconnects."""
        if qos not in (0, 1):
            raise ValueError("QoS %r not supported (0 or 1)" % (qos,))
        encode_subscribe(1, [(topic_filter, qos)])  # validates the filter
        for entry in self._subs:
            if entry[0] == topic_filter:
                entry[1] = qos
                entry[2] = _SUB_TODO
                break
        else:
            self._subs.append([topic_filter, qos, _SUB_TODO])
        if self.state == CONNECTED:
            self._send_subscribe()

    def disconnect(self):
        """Queue DISCONNECT after anything already queued; return the events."""
        if self.state == DISCONNECTED:
            return []
        was = self.state
        self._out.append(DISCONNECT_FRAME)
        self._down()
        return [(DISCONNECTED_EVENT if was == CONNECTED else CONNECT_FAILED, "closed")]

    def connection_lost(self, reason="connection_lost"):
        """The transport failed or was closed by the peer; return the events."""
        if self.state == DISCONNECTED:
            return []
        return [self._lost(reason)]

    # ------------------------------------------------------------ input

    def receive(self, data, now_ms):
        """Bytes from the transport; return events. A protocol error ends the connection."""
        if self.state == DISCONNECTED:
            return []
        self._stamp(now_ms)
        self._last_recv = now_ms
        events = []
        try:
            packets = self._decoder.feed(data)
        except MQTTError as err:
            self._handle_all(err.decoded, events)
            if self.state != DISCONNECTED:
                events.append(self._lost(err.reason))
            return events
        self._handle_all(packets, events)
        return events

    def _handle_all(self, packets, events):
        for packet in packets:
            if self.state == DISCONNECTED:
                return
            try:
                self._handle(packet, events)
            except MQTTError as err:
                events.append(self._lost(err.reason))
                return

    def tick(self, now_ms):
        """Time passes: send PINGREQ when due; detect connect and ping timeouts."""
        if self.state == DISCONNECTED:
            return []
        self._stamp(now_ms)
        if self.state == CONNECTING:
            if ticks_diff(now_ms, self._started) >= self.connect_timeout_ms:
                return [self._lost("connect_timeout")]
            return []
        if not self.keepalive_ms:
            return []
        if self._ping_sent is not None:
            if ticks_diff(now_ms, self._ping_sent) >= self.ping_timeout_ms:
                return [self._lost("ping_timeout")]
        elif (ticks_diff(now_ms, self._last_sent) >= self.keepalive_ms
              or ticks_diff(now_ms, self._last_recv) >= self.keepalive_ms):
            self._out.append(PINGREQ_FRAME)
            self._ping_sent = now_ms
            self._last_sent = now_ms
        return []

    # ------------------------------------------------------------ internals

    def _queue(self, frame):
        self._out.append(frame)
        self._unstamped = True

    def _stamp(self, now_ms):
        if self._unstamped:
            self._last_sent = now_ms
            self._unstamped = False

    def _allocate_id(self):
        for _ in range(65535):
            pid = self._next_id
            self._next_id = 1 if pid == 65535 else pid + 1
            if pid in self._pending_subs:
                continue
            for entry in self._inflight:
                if entry[0] == pid:
                    break
            else:
                return pid
        raise MQTTError("no_packet_id", "all 65535 packet ids are in use")

    def _send_subscribe(self):
        todo = [s for s in self._subs if s[2] == _SUB_TODO]
        if not todo:
            return
        packet_id = self._allocate_id()
        self._queue(encode_subscribe(packet_id, [(s[0], s[1]) for s in todo]))
        self._pending_subs[packet_id] = [s[0] for s in todo]
        for s in todo:
            s[2] = _SUB_SENT

    def _down(self):
        self.state = DISCONNECTED
        self._ping_sent = None
        self._pending_subs = {}
        for s in self._subs:
            if s[2] == _SUB_SENT:
                s[2] = _SUB_TODO

    def _lost(self, reason):
        was = self.state
        self._out = []
        self._down()
        return (DISCONNECTED_EVENT if was == CONNECTED else CONNECT_FAILED, reason)

    def _handle(self, packet, events):
        kind = packet.kind
        if kind == PUBLISH:
            if self.state != CONNECTED:
                raise MQTTError("unexpected_publish", "PUBLISH before CONNACK")
            if packet.qos == 1:
                self._queue(encode_puback(packet.packet_id))
            events.append((MESSAGE, packet.topic, packet.payload, packet.qos, packet.retain,
                           packet.dup))
        elif kind == PUBACK:
            pid = packet.packet_id
            for i in range(len(self._inflight)):
                if self._inflight[i][0] == pid:
                    del self._inflight[i]
                    events.append((PUBLISHED, pid))
                    break
            # A PUBACK for an unknown id (a late duplicate) is ignored.
        elif kind == SUBACK:
            filters = self._pending_subs.pop(packet.packet_id, None)
            if filters is None:
                return
            granted = packet.granted
            if len(granted) != len(filters):
                raise MQTTError("bad_suback", "%d return codes for %d filters" % (len(granted), len(filters)))
            for topic_filter, code in zip(filters, granted):
                for i in range(len(self._subs)):
                    entry = self._subs[i]
                    if entry[0] == topic_filter:
                        if code == SUBACK_FAILURE:
                            del self._subs[i]
                        elif entry[2] == _SUB_SENT:
                            entry[2] = _SUB_ACKED
                        break
                events.append((SUBSCRIBED, topic_filter, code))
        elif kind == PINGRESP:
            self._ping_sent = None
        elif kind == CONNACK:
            if self.state != CONNECTING:
                raise MQTTError("unexpected_connack", "second CONNACK on one connection")
            if packet.return_code:
                events.append(self._lost(CONNACK_REASONS[packet.return_code]))
                return
            self.state = CONNECTED
            events.append((CONNECTED_EVENT, packet.session_present))
            if not packet.session_present:
                for s in self._subs:
                    s[2] = _SUB_TODO
            self._send_subscribe()
            for entry in self._inflight:
                frame = entry[1]
                if entry[2]:
                    mark_dup(frame)
                entry[2] = True
                self._queue(frame)
