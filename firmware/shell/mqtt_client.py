"""Thin non-blocking socket shell around `mqtt_session.Session` (CPython and ESP32 MicroPython).

Uses only `socket.getaddrinfo`, `socket.socket`, `connect`, `setblocking`/`settimeout`,
`send`, `readinto` (MicroPython; `recv_into` on CPython), `recv` and `close`, so the same file
runs on the device and on a host. Without a wait (the device's poll) bytes arrive in one
receive buffer allocated with the client (`rx_chunk` bytes) and reused for every read: the
decoder copies out what a packet keeps. Nothing here
blocks for long except `getaddrinfo` (name resolution) and `close()` (which gives the
DISCONNECT up to `close_timeout_ms` to leave).

Drive it from a control loop:

    client = MQTTClient("broker.local", 1883, client_id="charger-7", will=(...))
    client.subscribe("chargers/7/cmd", 1)
    client.connect()
    while True:
        for event in client.poll():      # or poll(wait_ms=50) on a host
            ...
        ...                               # publish(...) whenever needed

One reconnect path: `connect()` arms the client and starts an attempt; whenever a connection
or an attempt ends, `poll()` waits an exponential, jittered backoff (supervisor.Backoff,
`reconnect_min_ms` up to `reconnect_max_ms`, reset by a CONNACK) and tries again, until
`close()`. `connect()` is idempotent and skips a pending backoff. With `auto_reconnect=False`
the client never retries by itself: its owner's supervisor decides when `connect()` runs (the
device, where supervisor.Link walks Wi-Fi, DNS and the broker with one backoff).

TLS (`tls=`, a context from broker_tls.make_context: MicroPython's `tls`, Mbed TLS): once the
TCP connect completes (select.poll sees the socket writable: lwIP may refuse a send while it
connects) the socket is wrapped with `server_hostname` and no handshake; the handshake then runs
inside the non-blocking writes and reads of the CONNECT and CONNACK, bounded by the session's
connect timeout. The TLS socket has no settimeout, so a host's `poll(wait_ms)` waits with
select.poll (which also sees bytes Mbed TLS holds decrypted). There is no fallback to plain TCP.

Events are the session's tuples (see mqtt_session): (CONNECTED, session_present),
(CONNECT_FAILED, reason), (DISCONNECTED, reason), (MESSAGE, topic, payload, qos, retain,
dup), (PUBLISHED, packet_id), (SUBSCRIBED, topic_filter, granted_qos). The shell adds the
reasons "dns_failed", "connect_error:<errno>", "io_error:<errno>", "peer_closed",
"tls_bad_cert" (the broker's certificate is not signed by the pinned CA or does not name
`server_hostname`), "tls_error:-0x<Mbed TLS code>", "tls_setup:<errno>" and whatever is passed
to `abort()`; `last_detail` holds Mbed TLS's words for the last TLS failure.
"""

import time

try:
    import socket
except ImportError:  # a port without sockets (the WebAssembly test build): pass `net`
    socket = None

try:
    import select
except ImportError:  # the WebAssembly test build
    select = None

try:
    import errno as _errno_mod
except ImportError:  # very old MicroPython
    import uerrno as _errno_mod

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from random import getrandbits as _getrandbits
except ImportError:
    _getrandbits = None

from mqtt_codec import DEFAULT_MAX_PACKET, MQTTError
from supervisor import Backoff
from mqtt_session import (
    CONNECT_FAILED, CONNECTED, CONNECTED_EVENT, CONNECTING, DISCONNECTED, DISCONNECTED_EVENT,
    MESSAGE, PUBLISHED, SUBSCRIBED, Session, ticks_diff,
)

__all__ = [
    "MQTTClient", "MQTTError", "CONNECTED_EVENT", "CONNECT_FAILED", "DISCONNECTED_EVENT",
    "MESSAGE", "PUBLISHED", "SUBSCRIBED",
]


# One read takes at most this many bytes; a packet longer than that is gathered by the decoder
# in its own buffer (mqtt_codec.Decoder).
RX_CHUNK = const(512)


def _code(name, default):
    return getattr(_errno_mod, name, default)


# "Not yet" from a non-blocking socket. 118 and 119 are what lwIP on the ESP32 port has been
# seen to report for a connect still in progress.
_BUSY = (_code("EAGAIN", 11), _code("EWOULDBLOCK", 11), _code("ETIMEDOUT", 110),
         _code("EINPROGRESS", 115), _code("EALREADY", 114), 118, 119)
# While the TCP handshake runs, send() may also answer "not connected" (bounded by the
# session's connect timeout).
_BUSY_CONNECTING = _BUSY + (_code("ENOTCONN", 107),)


def _errno(exc):
    code = getattr(exc, "errno", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    return code


def _is_busy(exc, connecting=False):
    code = _errno(exc)
    if code is None:  # CPython socket timeout (TimeoutError without errno)
        return True
    return code in (_BUSY_CONNECTING if connecting else _BUSY)


if hasattr(time, "ticks_ms"):
    def now_ms():
        return time.ticks_ms()

    def _sleep_ms(ms):
        time.sleep_ms(ms)
else:
    def now_ms():
        return int(time.monotonic() * 1000)

    def _sleep_ms(ms):
        time.sleep(ms / 1000)


class MQTTClient:
    """An MQTT 3.1.1 client for a control loop. See the module docstring."""

    def __init__(self, host, port=1883, client_id="", keepalive=60, clean_session=True,
                 username=None, password=None, will=None, max_packet=DEFAULT_MAX_PACKET,
                 max_inflight=16, connect_timeout_ms=10000, ping_timeout_ms=None,
                 reconnect_min_ms=1000, reconnect_max_ms=60000, read_budget=8192,
                 max_backlog=16384, close_timeout_ms=1000, net=None, auto_reconnect=True,
                 rx_chunk=RX_CHUNK, tls=None, server_hostname=None):
        """`net` is the socket module to use (getaddrinfo, socket, SOCK_STREAM); tests pass
        a fake one, the default is the real `socket`. `tls`: wrap every connection with this
        client context; the broker's certificate must name `server_hostname` (default `host`,
        which the device later sets to the resolved address)."""
        if net is None:
            net = socket
        if net is None:
            raise MQTTError("no_socket", "this port has no socket module")
        if reconnect_min_ms < 1 or reconnect_max_ms < reconnect_min_ms:
            raise ValueError("need 1 <= reconnect_min_ms <= reconnect_max_ms")
        if tls is not None and select is None:
            raise MQTTError("no_select", "TLS needs the select module to wait for the connect")
        self.host = host
        self.tls = tls
        self.server_hostname = server_hostname or host
        self._net = net
        self.port = port
        self.session = Session(client_id, keepalive, clean_session, username, password, will,
                               max_packet, max_inflight, connect_timeout_ms, ping_timeout_ms)
        self.backoff = Backoff(reconnect_min_ms, reconnect_max_ms,
                               None if _getrandbits is None else (lambda: _getrandbits(8)))
        self.auto_reconnect = auto_reconnect
        self.read_budget = read_budget
        self.max_backlog = max_backlog
        self.close_timeout_ms = close_timeout_ms
        self.sock = None
        self._armed = False           # reconnect automatically until close()
        self._next_attempt = None     # ms stamp of the next attempt while down
        self._sent_all = False        # the socket took every byte of the CONNECT frame
        self._out = b""               # bytes the socket has not taken yet
        self._out_pos = 0
        self._rx = bytearray(rx_chunk)  # every read lands here (no allocation per read)
        self._rx_mv = memoryview(self._rx)
        self._readinto = None         # the socket's readinto / recv_into
        self._send = None             # the socket's send (write for a TLS socket)
        self._tls_wait = False        # TLS: the TCP connect is under way, not wrapped yet
        self._poller = None           # TLS: select.poll of the socket (connect, then input)
        self.last_detail = None       # Mbed TLS's words for the last TLS failure
        self._events = []
        self._t = now_ms()            # the latest time given to (or read by) a public call
        self.last_errno = None

    # ------------------------------------------------------------ state

    @property
    def state(self):
        """mqtt_session.DISCONNECTED, CONNECTING or CONNECTED."""
        return self.session.state

    @property
    def connected(self):
        return self.session.state == CONNECTED

    @property
    def inflight(self):
        return self.session.inflight

    @property
    def backlog(self):
        """Bytes queued for the socket and not yet taken by it."""
        return len(self._out) - self._out_pos

    # ------------------------------------------------------------ public calls

    def connect(self, now=None):
        """Arm the client and start an attempt now unless one is open; idempotent."""
        self._armed = True
        self._t = now_ms() if now is None else now
        if self.sock is None:
            self._open(self._t)

    def publish(self, topic, payload, qos=0, retain=False):
        """Publish; return the packet id (0 at QoS 0).

        QoS 1 is accepted while down and goes out after the next CONNACK; PUBLISHED reports
        its PUBACK. QoS 0 raises MQTTError "not_connected" while down and "backlog_full"
        when the socket is not draining; QoS 1 raises "inflight_full" at `max_inflight`.
        """
        if qos == 0 and self.session.state == CONNECTED and self.backlog > self.max_backlog:
            raise MQTTError("backlog_full", "%d bytes wait for the socket" % self.backlog)
        packet_id = self.session.publish(topic, payload, qos, retain)
        self._flush()
        return packet_id

    def subscribe(self, topic_filter, qos=0):
        """Subscribe now or at the next connection; restored after every reconnect."""
        self.session.subscribe(topic_filter, qos)
        self._flush()

    def poll(self, now=None, wait_ms=0):
        """Do all pending work without blocking (or up to `wait_ms` waiting for input).

        Returns the events since the previous call.
        """
        t = self._t = now_ms() if now is None else now
        if self.sock is None:
            if self._armed and self._next_attempt is not None:
                left = ticks_diff(self._next_attempt, t)
                if left > 0 and wait_ms > 0:
                    _sleep_ms(min(left, wait_ms))
                    t = self._t = now_ms() if now is None else now
                    left = ticks_diff(self._next_attempt, t)
                if left <= 0:
                    self._open(t)
            elif wait_ms > 0:
                _sleep_ms(wait_ms)
        if self.sock is not None:
            self._flush()
        if self.sock is not None:
            self._read(t, wait_ms)
            if wait_ms > 0 and now is None:
                t = self._t = now_ms()
            if self.sock is not None:
                self._events.extend(self.session.tick(t))
                self._after_session(t)
                self._flush()
        return self._take_events()

    def abort(self, reason="aborted", now=None):
        """Drop the connection without DISCONNECT (the broker then publishes the will),
        e.g. when the network interface went down; reconnects later if armed."""
        if now is not None:
            self._t = now
        if self.sock is not None:
            self._events.extend(self.session.connection_lost(reason))
            self._drop(self._t)

    def close(self):
        """Send DISCONNECT (the broker discards the will), close the socket and stop
        reconnecting. Returns the events not yet returned by poll()."""
        self._armed = False
        self._next_attempt = None
        sock = self.sock
        if sock is not None:
            self._events.extend(self.session.disconnect())
            if self._sent_all:
                self._pull()
                try:
                    self._send_rest(sock)
                except (OSError, ValueError):
                    pass
            self._close_socket()
        return self._take_events()

    # ------------------------------------------------------------ internals

    def _send_rest(self, sock):
        """Give the socket what is queued, waiting up to close_timeout_ms (close())."""
        poller = self._poller
        if poller is None:
            sock.settimeout(self.close_timeout_ms / 1000)
        else:  # a TLS socket has no settimeout: wait for room with poll
            poller.modify(sock, select.POLLOUT)
        start = now_ms()
        while self._out_pos < len(self._out):
            n = self._send(memoryview(self._out)[self._out_pos:])
            if not n:
                left = self.close_timeout_ms - ticks_diff(now_ms(), start)
                if poller is None or left <= 0:
                    return
                poller.poll(left)
                continue
            self._out_pos += n

    def _take_events(self):
        events = self._events
        self._events = []
        return events

    def _open(self, t):
        self._next_attempt = None
        try:
            info = self._net.getaddrinfo(self.host, self.port, 0, self._net.SOCK_STREAM)[0]
        except OSError as exc:
            self.last_errno = _errno(exc)
            self._events.append((CONNECT_FAILED, "dns_failed"))
            self._schedule(t)
            return
        sock = None
        try:
            sock = self._net.socket(info[0], info[1], info[2])
            sock.setblocking(False)
            try:
                sock.connect(info[-1])
            except OSError as exc:
                if not _is_busy(exc, True):
                    raise
        except OSError as exc:
            self.last_errno = _errno(exc)
            if sock is not None:
                sock.close()
            self._events.append((CONNECT_FAILED, "connect_error:%s" % self.last_errno))
            self._schedule(t)
            return
        self.sock = sock
        self._readinto = getattr(sock, "readinto", None) or sock.recv_into
        self._send = sock.send
        if self.tls is not None:
            self._tls_wait = True
            self._poller = select.poll()
            self._poller.register(sock, select.POLLOUT)
        self._out = b""
        self._out_pos = 0
        self._sent_all = False
        self.session.connect(t)
        self._flush()

    def _tls_ready(self):
        """True once the TCP connection is wrapped in TLS (then the handshake runs inside the
        socket's writes and reads); False while the connect is under way or when wrapping
        failed (the attempt has ended then)."""
        raw = self.sock
        if not self._poller.poll(0):
            return False
        # writable, or an error that the first TLS write reports with its errno
        self._poller.unregister(raw)
        try:
            sock = self.tls.wrap_socket(raw, server_hostname=self.server_hostname,
                                        do_handshake_on_connect=False)
        except OSError as exc:  # Mbed TLS could not allocate its buffers
            self.last_errno = _errno(exc)
            self._events.extend(self.session.connection_lost("tls_setup:%s" % self.last_errno))
            self._drop(self._t)
            return False
        self.sock = sock
        self._tls_wait = False
        self._readinto = sock.readinto
        self._send = sock.write  # send exists only where the port builds DTLS in
        self._poller.register(sock, select.POLLIN)
        return True

    def _pull(self):
        more = self.session.data_to_send()
        if more:
            if self._out_pos >= len(self._out):
                self._out = more
            else:
                self._out = bytes(memoryview(self._out)[self._out_pos:]) + more
            self._out_pos = 0

    def _flush(self):
        """Give the socket as many queued bytes as it takes now."""
        if self.sock is None:
            return
        self._pull()
        if self._tls_wait and not self._tls_ready():
            return
        connecting = not self._sent_all
        while self._out_pos < len(self._out):
            try:
                n = self._send(memoryview(self._out)[self._out_pos:])
            except OSError as exc:
                if _is_busy(exc, connecting):
                    return
                self._io_failed(exc)
                return
            except ValueError as exc:  # Mbed TLS refused the broker's certificate
                if self.tls is None:
                    raise
                self._io_failed(exc)
                return
            if not n:
                return
            self._out_pos += n
        self._sent_all = True

    def _read(self, t, wait_ms):
        if not self._sent_all:
            if wait_ms > 0:  # TCP (or TLS) handshake still running: nothing to read yet
                if self._poller is not None:
                    self._poller.poll(min(wait_ms, 50))
                else:
                    _sleep_ms(min(wait_ms, 5))
            return
        budget = self.read_budget
        if wait_ms > 0 and self.backlog == 0:
            until = self.session.ms_until_tick(t)
            if until is not None and until < wait_ms:
                wait_ms = until
        else:
            wait_ms = 0
        if wait_ms > 0 and self._poller is not None:  # TLS: wait for input with poll, then read
            self._poller.poll(wait_ms)
            wait_ms = 0
        rx = self._rx
        while budget > 0 and self.sock is not None:
            want = len(rx) if budget > len(rx) else budget
            try:
                if wait_ms > 0:  # a host's poll(wait_ms): recv, as readinto drops bytes on a timeout
                    self.sock.settimeout(wait_ms / 1000)
                    try:
                        data = self.sock.recv(want)
                    finally:
                        if self.sock is not None:
                            self.sock.setblocking(False)
                    wait_ms = 0
                    got = len(data)
                else:
                    got = self._readinto(rx, want)
                    data = self._rx_mv[:got] if got else None
            except OSError as exc:
                if _is_busy(exc):
                    return
                self._io_failed(exc)
                return
            except ValueError as exc:  # Mbed TLS refused the broker's certificate
                if self.tls is None:
                    raise
                self._io_failed(exc)
                return
            if got is None:  # MicroPython's readinto: nothing waiting on a non-blocking socket
                return
            if not got:
                self._events.extend(self.session.connection_lost("peer_closed"))
                self._drop(t)
                return
            budget -= got
            self._events.extend(self.session.receive(data, t))
            self._after_session(t)
            self._flush()

    def _after_session(self, t):
        """Close the socket when the session ended the connection; track backoff."""
        state = self.session.state
        if state == CONNECTED:
            self.backoff.reset()
        elif state == DISCONNECTED and self.sock is not None:
            self._drop(t)

    def _io_failed(self, exc):
        if isinstance(exc, ValueError):  # Mbed TLS: the certificate failed verification
            self.last_errno = None
            self.last_detail = str(exc).strip()
            reason = "tls_bad_cert"
        else:
            self.last_errno = code = _errno(exc)
            if isinstance(code, int) and code < 0:  # Mbed TLS's own codes are negative
                self.last_detail = exc.args[1] if len(exc.args) > 1 else None
                reason = "tls_error:-0x%04x" % -code
            else:
                reason = "io_error:%s" % code
        self._events.extend(self.session.connection_lost(reason))
        self._drop(self._t)

    def _drop(self, t):
        self._close_socket()
        self._schedule(t)

    def _close_socket(self):
        sock = self.sock
        self.sock = None
        self._out = b""
        self._out_pos = 0
        self._sent_all = False
        self._tls_wait = False
        self._poller = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _schedule(self, t):
        if not self._armed or not self.auto_reconnect:
            self._next_attempt = None
            return
        self._next_attempt = t + self.backoff.delay()
