"""Peer links between real sockets on loopback: mutual authentication by genesis keys, framing
limits, reconnection, and sealed frames that a caller on the path can neither alter nor add to."""

import queue
import select
import socket
import threading
import time

import pytest
from nacl.signing import SigningKey

from bureau.consensus.types import SyncRequest, encode_message
from bureau.ledger.genesis import Genesis
from bureau.metrics import Metrics
from bureau.peers.handshake import (CH_CONSENSUS, CH_HELLO, CH_PROOF, MAX_FRAME, ROLE_INITIATOR, FrameReader,
                                    HandshakeError, Hello, frame)
from bureau.peers.transport import PeerTransport
from bureau.tools.mosquitto import free_port


def _genesis(keys, ports):
    doc = {"v": 1, "chain_id": "test-chain", "genesis_time_ms": 0,
           "validators": [{"id": f"n{i}", "public_key": k.verify_key.encode().hex(), "power": 1,
                           "address": f"127.0.0.1:{ports[i]}"} for i, k in enumerate(keys)],
           "operators": [{"id": "op", "public_key": SigningKey.generate().verify_key.encode().hex()}]}
    return Genesis.from_doc(doc)


@pytest.fixture
def net():
    keys = [SigningKey.generate() for _ in range(3)]
    ports = [free_port() for _ in range(3)]
    genesis = _genesis(keys, ports)
    inbox: queue.Queue = queue.Queue()
    ts = [PeerTransport(genesis, f"n{i}", keys[i], f"127.0.0.1:{ports[i]}",
                        lambda peer, ch, data, me=f"n{i}": inbox.put((me, peer, ch, data))) for i in range(3)]
    for t in ts:
        t.start()
    yield genesis, keys, ports, ts, inbox
    for t in ts:
        t.stop()


def _wait_links(ts, timeout=10, want=2):
    deadline = time.monotonic() + timeout
    while any(len(t.connected_peers()) < want for t in ts):
        assert time.monotonic() < deadline, "links did not come up"
        time.sleep(0.02)


def test_broadcast_reaches_every_peer_once_with_the_sender_authenticated(net):
    _, _, _, ts, inbox = net
    _wait_links(ts)
    ts[0].broadcast(CH_CONSENSUS, b"vote")
    got = sorted(inbox.get(timeout=5) for _ in range(2))
    assert got == [("n1", "n0", CH_CONSENSUS, b"vote"), ("n2", "n0", CH_CONSENSUS, b"vote")]
    big = bytes(3_000_000)
    assert ts[1].send("n2", CH_CONSENSUS, big)
    assert inbox.get(timeout=10) == ("n2", "n1", CH_CONSENSUS, big)


def test_impostor_without_the_key_is_refused(net):
    genesis, keys, ports, ts, inbox = net
    _wait_links(ts)
    s = socket.create_connection(("127.0.0.1", ports[0]))
    s.sendall(frame(CH_HELLO, Hello(ROLE_INITIATOR, "test-chain", "n1", "n0", bytes(32), bytes(32)).encode()))  # claims n1
    s.sendall(frame(CH_PROOF, bytes(64)))  # a proof it cannot make
    s.settimeout(5)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    assert inbox.empty()
    assert [body[0] for body in FrameReader().feed(data)] == [CH_HELLO]  # n0 signed nothing for it


def test_a_restarted_peer_is_reconnected(net):
    genesis, keys, ports, ts, inbox = net
    _wait_links(ts)
    ts[2].stop()
    time.sleep(0.3)
    t2 = PeerTransport(genesis, "n2", keys[2], f"127.0.0.1:{ports[2]}", lambda p, c, d: inbox.put(("n2", p, c, d)))
    t2.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            ts[0].send("n2", CH_CONSENSUS, b"again")
            try:
                got = inbox.get(timeout=0.5)
                if got == ("n2", "n0", CH_CONSENSUS, b"again"):
                    break
            except queue.Empty:
                pass
            assert time.monotonic() < deadline, "no delivery after restart"
    finally:
        t2.stop()


def test_frame_reader_refuses_oversized_and_splits_stream():
    r = FrameReader()
    data = frame(2, b"abc") + frame(3, b"")
    assert r.feed(data[:3]) == []
    assert r.feed(data[3:]) == [b"\x02abc", b"\x03"]
    with pytest.raises(HandshakeError):
        FrameReader().feed((MAX_FRAME + 1).to_bytes(4, "big") + b"\x02")


def _relay(addr_a, addr_b, first_a=b"", first_b=b"", forged=b"", timeout=8.0):
    """A caller with no key between two bureaus: connects to both, pipes each one's bytes to the
    other and, once both sides passed a login's worth of frames (hello and proof each way),
    sends `forged` to both as the peer it relayed. Returns the frames it saw each way."""
    a, b = socket.create_connection(addr_a), socket.create_connection(addr_b)
    a.sendall(first_a)
    b.sendall(first_b)
    seen = {a: 0, b: 0}
    readers = {a: FrameReader(), b: FrameReader()}
    other = {a: b, b: a}
    deadline = time.monotonic() + timeout
    injected = False
    try:
        import select
        while time.monotonic() < deadline:
            ready, _, _ = select.select([a, b], [], [], 0.1)
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return seen
                seen[s] += len(readers[s].feed(data))
                other[s].sendall(data)
            if not injected and min(seen.values()) >= 2:
                a.sendall(frame(CH_CONSENSUS, forged))
                b.sendall(frame(CH_CONSENSUS, forged))
                injected = True
    except OSError:
        pass
    finally:
        a.close()
        b.close()
    return seen


def _inbox_has(inbox, payload, wait):
    deadline = time.monotonic() + wait
    found = False
    while time.monotonic() < deadline:
        try:
            if inbox.get(timeout=0.1)[3] == payload:
                found = True
        except queue.Empty:
            pass
    return found


def test_reflection_relay_between_two_bureaus_does_not_log_in(net):
    """The caller connects to n0 claiming nothing and to n1, and lets each answer the other:
    with proofs both sides made over the same bytes this logged in as n1 at n0 and as n0 at n1."""
    _, _, ports, ts, inbox = net
    _wait_links(ts)
    forged = b"forged by a relay"
    seen = _relay(("127.0.0.1", ports[0]), ("127.0.0.1", ports[1]), forged=forged)
    assert not _inbox_has(inbox, forged, wait=1.0), f"relay logged in (frames seen {list(seen.values())})"


def test_relay_posing_as_initiator_to_both_does_not_log_in(net):
    _, _, ports, ts, inbox = net
    _wait_links(ts)
    forged = b"forged by a relay"
    to_n0 = frame(CH_HELLO, Hello(ROLE_INITIATOR, "test-chain", "n1", "n0", bytes(32), bytes(32)).encode())
    to_n1 = frame(CH_HELLO, Hello(ROLE_INITIATOR, "test-chain", "n0", "n1", bytes(range(32)), bytes(32)).encode())
    _relay(("127.0.0.1", ports[0]), ("127.0.0.1", ports[1]), to_n0, to_n1, forged=forged)
    assert not _inbox_has(inbox, forged, wait=1.0)
    assert sorted(ts[0].inbound_peers()) == ["n1", "n2"]  # the honest links stay up


class _OnPath:
    """A TCP forwarder on the dialler's path that passes the login (hello and proof) and the
    first frame after it untouched, then, once, either flips a bit of the next frame
    ("flip") or sends a frame of its own in front of it ("inject": a SyncRequest as a frame
    before login looks). Later connections pass untouched."""

    def __init__(self, target_port: int, mode: str, injected: bytes) -> None:
        self.target_port, self.mode, self.injected = target_port, mode, injected
        self.port = free_port()
        self.tampered = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._socks: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the receiver does not listen yet: the dialler tries again
                client.close()
                continue
            self._socks += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        buf, frames = b"", 0
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [])
                if upstream in ready:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    if self.tampered.is_set():
                        upstream.sendall(data)
                        continue
                    buf += data
                    while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                        n = 4 + int.from_bytes(buf[:4], "big")  # a whole frame from the dialler
                        wire, buf = buf[:n], buf[n:]
                        frames += 1
                        if frames == 4:  # hello, proof, one honest frame after the login
                            if self.mode == "flip":
                                wire = wire[:4] + bytes([wire[4] ^ 1]) + wire[5:]
                            else:
                                upstream.sendall(frame(CH_CONSENSUS, self.injected))
                            self.tampered.set()
                        upstream.sendall(wire)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        for s in self._socks:
            s.close()


@pytest.mark.parametrize("mode", ["inject", "flip"])
def test_frames_altered_or_added_on_the_path_after_an_honest_login_are_not_delivered(mode):
    """n0 dials n1 through a forwarder that relays the honest login and then tampers. n1 drops
    the link at the bad frame (counted) without delivering it or what was tampered with, and n0's
    next login, not banned, carries on."""
    keys = [SigningKey.generate() for _ in range(2)]
    ports = [free_port() for _ in range(2)]
    genesis = _genesis(keys, ports)
    injected = encode_message(SyncRequest(1, 16))
    path = _OnPath(ports[1], mode, injected)
    inbox: queue.Queue = queue.Queue()
    receiver_metrics = Metrics()
    n0 = PeerTransport(genesis, "n0", keys[0], f"127.0.0.1:{ports[0]}", lambda p, c, d: None,
                       addresses={"n1": f"127.0.0.1:{path.port}"})
    n1 = PeerTransport(genesis, "n1", keys[1], f"127.0.0.1:{ports[1]}", lambda p, c, d: inbox.put((p, c, d)),
                       metrics=receiver_metrics)
    n0.start()
    n1.start()
    try:
        _wait_links([n0], want=1)
        assert n0.send("n1", CH_CONSENSUS, b"honest 1")
        assert inbox.get(timeout=5) == ("n0", CH_CONSENSUS, b"honest 1")
        n0.send("n1", CH_CONSENSUS, b"honest 2")  # flipped on the way, or behind the injected frame
        assert path.tampered.wait(5)
        deadline = time.monotonic() + 10
        while receiver_metrics.get("peer_disconnected", "bad_frame") == 0:
            assert time.monotonic() < deadline, "the receiver kept a link that carried a bad frame"
            time.sleep(0.02)
        # the honest sender logs in again and is heard
        deadline = time.monotonic() + 10
        got = []
        while ("n0", CH_CONSENSUS, b"honest 3") not in got:
            assert time.monotonic() < deadline, f"no delivery after the link was dropped: {got}"
            n0.send("n1", CH_CONSENSUS, b"honest 3")
            try:
                got.append(inbox.get(timeout=0.3))
            except queue.Empty:
                pass
        assert {d for _, _, d in got} == {b"honest 3"}, got  # neither the injected frame nor "honest 2"
        assert receiver_metrics.get("peer_disconnected", "bad_frame") == 1
    finally:
        n0.stop()
        n1.stop()
        path.close()
