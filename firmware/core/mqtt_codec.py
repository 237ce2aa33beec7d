"""MQTT 3.1.1 packet codec for the charger firmware (sans-I/O; MicroPython and CPython alike).

Client side only: encoders for what a client sends (CONNECT, PUBLISH QoS 0/1, PUBACK,
SUBSCRIBE, PINGREQ, DISCONNECT) and an incremental `Decoder` for what a server sends
(CONNACK, PUBLISH QoS 0/1, PUBACK, SUBACK, PINGRESP). Section numbers refer to the
OASIS MQTT 3.1.1 standard.

Errors:
- bad arguments to an encoder (a caller bug) raise `ValueError` with a readable message;
- bad bytes from the wire raise `MalformedPacket` (or its subclass `PacketTooLarge`), an
  `MQTTError` carrying a short machine `reason` and a human `detail`. After such an error the
  stream is out of sync: the connection must be dropped and the decoder `reset()`.

Encoders return a `bytearray` sized exactly once (no per-byte allocation); the decoder
assembles a packet body in one buffer allocated when the decoder is made.
"""

from errors import CodecError

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x


# Control packet types (section 2.2.1).
CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
SUBSCRIBE = const(8)
SUBACK = const(9)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

SUBACK_FAILURE = const(0x80)
MAX_REMAINING_LENGTH = const(268435455)
# The largest packet the charger takes: the bureau's offline-list pages and manifest are at most
# 1536 bytes of payload (docs/authorization.md), plus fixed header (5), topic (at most 64 on
# the charger's subscriptions) and packet id; every other message it receives (signed acks, auth
# replies, tariff push, remote stop) is smaller. The decoder allocates this once, and it is the
# largest buffer the charger holds beside Wi-Fi and TLS; a larger packet is refused
# ("too_large"), never buffered.
DEFAULT_MAX_PACKET = const(1664)

# CONNACK return codes 0..5 (section 3.2.2.3), as machine reasons.
CONNACK_REASONS = (
    "accepted",
    "unacceptable_protocol_version",
    "identifier_rejected",
    "server_unavailable",
    "bad_username_or_password",
    "not_authorized",
)

PINGREQ_FRAME = b"\xc0\x00"
DISCONNECT_FRAME = b"\xe0\x00"

_DUP = const(0x08)
_RETAIN = const(0x01)
_MAX_FIELD = const(65535)

_PACKET_NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
    SUBSCRIBE: "SUBSCRIBE", SUBACK: "SUBACK", PINGREQ: "PINGREQ", PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
}


class MQTTError(CodecError):
    """An MQTT failure: a packet that cannot be used, or a session that cannot take a request."""


class MalformedPacket(MQTTError):
    """Bytes from the server that are not a valid MQTT 3.1.1 packet for a client.

    `decoded` holds the packets completed in the same `feed()` call before the bad one.
    """


class PacketTooLarge(MalformedPacket):
    """A packet whose announced size exceeds the decoder's `max_packet`."""


def packet_name(kind):
    return _PACKET_NAMES.get(kind, "type %d" % kind)


# ---------------------------------------------------------------- remaining length (2.2.3)

def varint_size(n):
    """Bytes needed to encode remaining length `n`."""
    if n < 0 or n > MAX_REMAINING_LENGTH:
        raise ValueError("remaining length %d out of range 0..%d" % (n, MAX_REMAINING_LENGTH))
    if n < 128:
        return 1
    if n < 16384:
        return 2
    if n < 2097152:
        return 3
    return 4


def write_varint(buf, offset, n):
    """Write remaining length `n` into `buf` at `offset`; return the offset after it."""
    varint_size(n)  # range check
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            buf[offset] = b | 0x80
            offset += 1
        else:
            buf[offset] = b
            return offset + 1


def encode_varint(n):
    buf = bytearray(varint_size(n))
    write_varint(buf, 0, n)
    return bytes(buf)


def decode_varint(buf, offset=0, end=None):
    """Decode a remaining length at `offset`.

    Returns (value, offset after it), or None when `buf` ends before the last byte.
    Raises MalformedPacket when a fifth byte would be needed.
    """
    if end is None:
        end = len(buf)
    value = 0
    shift = 0
    i = offset
    while i < end:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
        if shift == 28:
            raise MalformedPacket("bad_remaining_length", "more than 4 length bytes")
    return None


# ---------------------------------------------------------------- field helpers

def _as_bytes(value, what):
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value
    raise ValueError("%s must be str or bytes, not %s" % (what, type(value).__name__))


def utf8_problem(buf, start=0, end=None):
    """None when buf[start:end] is well-formed UTF-8 (RFC 3629) without U+0000, else why not.

    Checked byte by byte because MicroPython's own check lets surrogates (U+D800..U+DFFF),
    overlong forms and code points above U+10FFFF through, which MQTT forbids (1.5.3).
    """
    if end is None:
        end = len(buf)
    i = start
    while i < end:
        b = buf[i]
        if b < 0x80:
            if b == 0:
                return "U+0000"
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            n, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= b <= 0xEF:
            n = 2
            lo = 0xA0 if b == 0xE0 else 0x80
            hi = 0x9F if b == 0xED else 0xBF
        elif 0xF0 <= b <= 0xF4:
            n = 3
            lo = 0x90 if b == 0xF0 else 0x80
            hi = 0x8F if b == 0xF4 else 0xBF
        else:
            return "bad UTF-8 lead byte 0x%02x" % b
        if i + n >= end:
            return "truncated UTF-8 sequence"
        c = buf[i + 1]
        if c < lo or c > hi:
            return "bad UTF-8 sequence at byte %d" % (i - start)
        for k in range(i + 2, i + n + 1):
            if buf[k] & 0xC0 != 0x80:
                return "bad UTF-8 sequence at byte %d" % (i - start)
        i += n + 1
    return None


def _utf8_field(value, what, allow_empty):
    """A UTF-8 string field (1.5.3): well-formed UTF-8, no U+0000, at most 65535 bytes."""
    raw = _as_bytes(value, what)
    if len(raw) > _MAX_FIELD:
        raise ValueError("%s is %d bytes, the limit is 65535" % (what, len(raw)))
    if not allow_empty and len(raw) == 0:
        raise ValueError("%s must not be empty" % what)
    problem = utf8_problem(raw)
    if problem is not None:
        raise ValueError("%s: %s" % (what, problem))
    return raw


def _topic_name(topic, what="topic"):
    """A topic name to publish to (4.7): no wildcards."""
    raw = _utf8_field(topic, what, False)
    if b"+" in raw or b"#" in raw:
        raise ValueError("%s %r must not contain wildcards" % (what, topic))
    return raw


def _topic_filter(topic_filter):
    """A subscription filter (4.7.1): '#' last and alone in its level, '+' alone in its level."""
    raw = _utf8_field(topic_filter, "topic filter", False)
    levels = raw.split(b"/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if b"#" in level and (level != b"#" or i != last):
            raise ValueError("topic filter %r: '#' must be the whole last level" % (topic_filter,))
        if b"+" in level and level != b"+":
            raise ValueError("topic filter %r: '+' must be a whole level" % (topic_filter,))
    return raw


def _binary_field(value, what):
    raw = _as_bytes(value, what)
    if len(raw) > _MAX_FIELD:
        raise ValueError("%s is %d bytes, the limit is 65535" % (what, len(raw)))
    return raw


def _check_packet_id(packet_id):
    if not isinstance(packet_id, int) or packet_id < 1 or packet_id > 65535:
        raise ValueError("packet id %r out of range 1..65535" % (packet_id,))


def _put_u16(buf, i, n):
    buf[i] = n >> 8
    buf[i + 1] = n & 0xFF
    return i + 2


def _put_field(buf, i, raw):
    n = len(raw)
    buf[i] = n >> 8
    buf[i + 1] = n & 0xFF
    i += 2
    buf[i:i + n] = raw
    return i + n


def _frame(first_byte, remaining):
    """Allocate a frame for `remaining` body bytes; return (buf, offset of the body)."""
    buf = bytearray(1 + varint_size(remaining) + remaining)
    buf[0] = first_byte
    return buf, write_varint(buf, 1, remaining)


# ---------------------------------------------------------------- encoders

def encode_connect(client_id, clean_session=True, keepalive=60, username=None, password=None,
                   will_topic=None, will_payload=b"", will_qos=0, will_retain=False):
    """CONNECT (3.1). `keepalive` in seconds, 0 disables it."""
    cid = _utf8_field(client_id, "client id", True)
    if len(cid) == 0 and not clean_session:
        raise ValueError("an empty client id needs clean_session=True (MQTT-3.1.3-7)")
    if not isinstance(keepalive, int) or keepalive < 0 or keepalive > 65535:
        raise ValueError("keepalive %r out of range 0..65535 s" % (keepalive,))
    flags = 0x02 if clean_session else 0x00
    remaining = 10 + 2 + len(cid)
    wt = wp = user = pw = None
    if will_topic is not None:
        wt = _topic_name(will_topic, "will topic")
        wp = _binary_field(will_payload, "will payload")
        if will_qos not in (0, 1, 2):
            raise ValueError("will QoS %r must be 0, 1 or 2" % (will_qos,))
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        remaining += 4 + len(wt) + len(wp)
    elif will_qos or will_retain:
        raise ValueError("will QoS/retain given without a will topic")
    if username is not None:
        user = _utf8_field(username, "username", True)
        flags |= 0x80
        remaining += 2 + len(user)
    if password is not None:
        if username is None:
            raise ValueError("a password needs a username in MQTT 3.1.1 (MQTT-3.1.2-22)")
        pw = _binary_field(password, "password")
        flags |= 0x40
        remaining += 2 + len(pw)
    buf, i = _frame(CONNECT << 4, remaining)
    i = _put_field(buf, i, b"MQTT")
    buf[i] = 4  # protocol level 3.1.1
    buf[i + 1] = flags
    i = _put_u16(buf, i + 2, keepalive)
    i = _put_field(buf, i, cid)
    if wt is not None:
        i = _put_field(buf, i, wt)
        i = _put_field(buf, i, wp)
    if user is not None:
        i = _put_field(buf, i, user)
    if pw is not None:
        i = _put_field(buf, i, pw)
    return buf


def encode_publish(topic, payload, qos=0, retain=False, dup=False, packet_id=0):
    """PUBLISH (3.3) at QoS 0 or 1; QoS 1 needs a packet id, QoS 0 must have none and no DUP."""
    raw_topic = _topic_name(topic)
    body = _as_bytes(payload, "payload")
    if qos == 0:
        if packet_id:
            raise ValueError("a QoS 0 PUBLISH has no packet id")
        if dup:
            raise ValueError("DUP must be 0 on a QoS 0 PUBLISH (MQTT-3.3.1-2)")
    elif qos == 1:
        _check_packet_id(packet_id)
    else:
        raise ValueError("QoS %r not supported (0 or 1)" % (qos,))
    remaining = 2 + len(raw_topic) + (2 if qos else 0) + len(body)
    if remaining > MAX_REMAINING_LENGTH:
        raise ValueError("PUBLISH of %d bytes exceeds the MQTT limit" % remaining)
    first = (PUBLISH << 4) | (qos << 1) | (_DUP if dup else 0) | (_RETAIN if retain else 0)
    buf, i = _frame(first, remaining)
    i = _put_field(buf, i, raw_topic)
    if qos:
        i = _put_u16(buf, i, packet_id)
    buf[i:i + len(body)] = body
    return buf


def mark_dup(frame):
    """Set the DUP flag in place on an encoded QoS 1 PUBLISH frame (a bytearray)."""
    if frame[0] >> 4 != PUBLISH or not frame[0] & 0x06:
        raise ValueError("DUP applies only to a QoS 1 PUBLISH frame")
    frame[0] |= _DUP
    return frame


def encode_puback(packet_id):
    """PUBACK (3.4)."""
    _check_packet_id(packet_id)
    return bytearray((PUBACK << 4, 2, packet_id >> 8, packet_id & 0xFF))


def encode_subscribe(packet_id, filters):
    """SUBSCRIBE (3.8): `filters` is a non-empty list of (topic_filter, requested_qos)."""
    _check_packet_id(packet_id)
    if not filters:
        raise ValueError("SUBSCRIBE needs at least one topic filter (MQTT-3.8.3-3)")
    raws = []
    remaining = 2
    for topic_filter, qos in filters:
        if qos not in (0, 1, 2):
            raise ValueError("requested QoS %r must be 0, 1 or 2" % (qos,))
        raw = _topic_filter(topic_filter)
        raws.append((raw, qos))
        remaining += 3 + len(raw)
    buf, i = _frame((SUBSCRIBE << 4) | 0x02, remaining)
    i = _put_u16(buf, i, packet_id)
    for raw, qos in raws:
        i = _put_field(buf, i, raw)
        buf[i] = qos
        i += 1
    return buf


def encode_pingreq():
    return PINGREQ_FRAME


def encode_disconnect():
    return DISCONNECT_FRAME


# ---------------------------------------------------------------- decoded packets

class Packet:
    """One decoded server packet. Fields that do not apply keep their class defaults.

    CONNACK: session_present, return_code; PUBLISH: topic (str), payload (bytes), qos,
    retain, dup, packet_id (0 at QoS 0); PUBACK: packet_id; SUBACK: packet_id, granted
    (bytes of granted QoS, 0x80 = failure); PINGRESP: nothing.
    """

    packet_id = 0
    topic = None
    payload = None
    qos = 0
    retain = False
    dup = False
    return_code = 0
    session_present = False
    granted = None

    def __init__(self, kind):
        self.kind = kind

    def _fields(self):
        return (self.kind, self.packet_id, self.topic, self.payload, self.qos, self.retain,
                self.dup, self.return_code, self.session_present,
                None if self.granted is None else bytes(self.granted))

    def __eq__(self, other):
        return isinstance(other, Packet) and self._fields() == other._fields()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        k = self.kind
        if k == CONNACK:
            extra = "rc=%d sp=%d" % (self.return_code, self.session_present)
        elif k == PUBLISH:
            extra = "topic=%r qos=%d retain=%d dup=%d id=%d len=%d" % (
                self.topic, self.qos, self.retain, self.dup, self.packet_id, len(self.payload))
        elif k == PUBACK:
            extra = "id=%d" % self.packet_id
        elif k == SUBACK:
            extra = "id=%d granted=%r" % (self.packet_id, list(self.granted))
        else:
            extra = ""
        return "<%s %s>" % (packet_name(k), extra)


def connack(return_code=0, session_present=False):
    p = Packet(CONNACK)
    p.return_code = return_code
    p.session_present = session_present
    return p


def publish(topic, payload, qos=0, retain=False, dup=False, packet_id=0):
    p = Packet(PUBLISH)
    p.topic = topic
    p.payload = payload
    p.qos = qos
    p.retain = retain
    p.dup = dup
    p.packet_id = packet_id
    return p


def puback(packet_id):
    p = Packet(PUBACK)
    p.packet_id = packet_id
    return p


def suback(packet_id, granted):
    p = Packet(SUBACK)
    p.packet_id = packet_id
    p.granted = bytes(granted)
    return p


def pingresp():
    return Packet(PINGRESP)


# ---------------------------------------------------------------- decoder

class Decoder:
    """Incremental decoder of server-to-client packets.

    `feed(data)` takes any chunk (partial packets, several packets) and returns the list of
    packets it completed. `max_packet` bounds a whole packet (fixed header included); its
    body buffer is allocated once here. Packets that fit wholly in one chunk are parsed in
    place without copying into the buffer.
    """

    def __init__(self, max_packet=DEFAULT_MAX_PACKET):
        if max_packet < 2 or max_packet > MAX_REMAINING_LENGTH + 5:
            raise ValueError("max_packet %r out of range" % (max_packet,))
        self.max_packet = max_packet
        self._buf = bytearray(max_packet)
        self._mv = memoryview(self._buf)
        self.reset()

    def reset(self):
        """Forget any partial packet and a previous error (for a new connection)."""
        self._first = -1      # first byte of the packet in progress, -1 between packets
        self._length = 0      # remaining length being read / read
        self._length_bytes = 0
        self._have = -1       # body bytes buffered; -1 while the length is being read
        self._failed = None

    @property
    def idle(self):
        """True when no partial packet is buffered."""
        return self._first < 0

    def feed(self, data):
        if self._failed is not None:
            raise MalformedPacket("decoder_failed", "stream out of sync after: " + str(self._failed))
        out = []
        try:
            self._feed(data, out)
        except MQTTError as err:
            err.decoded = out
            self._failed = err
            raise
        return out

    def _feed(self, data, out):
        n = len(data)
        i = 0
        mv = None
        while i < n:
            if self._first < 0:
                first = data[i]
                i += 1
                _check_first_byte(first)
                self._first = first
                self._length = 0
                self._length_bytes = 0
                self._have = -1
                continue
            if self._have < 0:
                b = data[i]
                i += 1
                self._length |= (b & 0x7F) << (7 * self._length_bytes)
                self._length_bytes += 1
                if b & 0x80:
                    if self._length_bytes == 4:
                        raise MalformedPacket("bad_remaining_length", "more than 4 length bytes")
                    continue
                length = self._length
                total = 1 + self._length_bytes + length
                if total > self.max_packet:
                    raise PacketTooLarge(
                        "too_large", "%s of %d bytes, limit %d" % (
                            packet_name(self._first >> 4), total, self.max_packet))
                _check_length(self._first, length)
                if n - i >= length:  # whole body in this chunk: parse in place
                    if mv is None:
                        mv = memoryview(data)
                    out.append(_parse(self._first, mv, i, i + length))
                    i += length
                    self._first = -1
                else:
                    self._have = 0
                continue
            length = self._length
            have = self._have
            take = length - have
            if take > n - i:
                take = n - i
            if mv is None:
                mv = memoryview(data)
            self._buf[have:have + take] = mv[i:i + take]
            i += take
            have += take
            self._have = have
            if have == length:
                out.append(_parse(self._first, self._mv, 0, length))
                self._first = -1


def _check_first_byte(first):
    kind = first >> 4
    flags = first & 0x0F
    if kind == PUBLISH:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("bad_flags", "PUBLISH with QoS 3")
        if qos == 2:
            raise MalformedPacket("unsupported_qos", "QoS 2 PUBLISH (this client subscribes at QoS <= 1)")
        if qos == 0 and flags & _DUP:
            raise MalformedPacket("bad_flags", "DUP set on a QoS 0 PUBLISH")
        return
    if kind in (CONNACK, PUBACK, SUBACK, PINGRESP):
        if flags:
            raise MalformedPacket("bad_flags", "%s with flags 0x%x" % (packet_name(kind), flags))
        return
    raise MalformedPacket("unexpected_type", "%s is not sent by a server to this client" % packet_name(kind))


def _check_length(first, length):
    kind = first >> 4
    if kind == CONNACK or kind == PUBACK:
        ok = length == 2
    elif kind == PINGRESP:
        ok = length == 0
    elif kind == SUBACK:
        ok = length >= 3
    else:  # PUBLISH: topic length field, at least one topic byte, packet id at QoS 1
        ok = length >= (5 if first & 0x06 else 3)
    if not ok:
        raise MalformedPacket("bad_length", "%s with remaining length %d" % (packet_name(kind), length))


def _parse(first, buf, start, end):
    kind = first >> 4
    if kind == PUBLISH:
        tlen = (buf[start] << 8) | buf[start + 1]
        t0 = start + 2
        t1 = t0 + tlen
        qos = (first >> 1) & 0x03
        if tlen == 0:
            raise MalformedPacket("bad_topic", "empty topic name")
        if t1 + (2 if qos else 0) > end:
            raise MalformedPacket("bad_length", "topic length %d overruns the packet" % tlen)
        problem = utf8_problem(buf, t0, t1)
        if problem is not None:
            raise MalformedPacket("bad_utf8", "topic name: " + problem)
        topic = str(buf[t0:t1], "utf-8")
        if "+" in topic or "#" in topic:
            raise MalformedPacket("bad_topic", "topic name %r has a wildcard" % topic)
        p = Packet(PUBLISH)
        p.topic = topic
        p.qos = qos
        p.retain = bool(first & _RETAIN)
        p.dup = bool(first & _DUP)
        if qos:
            pid = (buf[t1] << 8) | buf[t1 + 1]
            if pid == 0:
                raise MalformedPacket("bad_packet_id", "QoS 1 PUBLISH with packet id 0")
            p.packet_id = pid
            t1 += 2
        p.payload = bytes(buf[t1:end])
        return p
    if kind == CONNACK:
        ack_flags = buf[start]
        rc = buf[start + 1]
        if ack_flags & 0xFE:
            raise MalformedPacket("bad_flags", "CONNACK acknowledge flags 0x%02x" % ack_flags)
        if rc >= len(CONNACK_REASONS):
            raise MalformedPacket("bad_return_code", "CONNACK return code %d" % rc)
        if rc and ack_flags:
            raise MalformedPacket("bad_flags", "session present on a refused CONNACK (MQTT-3.2.2-4)")
        return connack(rc, bool(ack_flags))
    if kind == PUBACK:
        pid = (buf[start] << 8) | buf[start + 1]
        if pid == 0:
            raise MalformedPacket("bad_packet_id", "PUBACK with packet id 0")
        return puback(pid)
    if kind == SUBACK:
        pid = (buf[start] << 8) | buf[start + 1]
        if pid == 0:
            raise MalformedPacket("bad_packet_id", "SUBACK with packet id 0")
        granted = bytes(buf[start + 2:end])
        for g in granted:
            if g > 2 and g != SUBACK_FAILURE:
                raise MalformedPacket("bad_return_code", "SUBACK return code 0x%02x" % g)
        return suback(pid, granted)
    return pingresp()  # PINGRESP; other types were refused by _check_first_byte
