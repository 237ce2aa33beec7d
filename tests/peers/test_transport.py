"""Peer links between real sockets on loopback: mutual authentication by genesis keys, framing
limits, reconnection."""

import queue
import socket
import time

import pytest
from nacl.signing import SigningKey

from bureau.ledger.genesis import Genesis
from bureau.peers.handshake import (CH_CONSENSUS, CH_HELLO, FrameReader, HandshakeError, MAX_FRAME, frame,
                                    hello)
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


def _wait_links(ts, timeout=10):
    deadline = time.monotonic() + timeout
    while any(len(t.connected_peers()) < 2 for t in ts):
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
    s.sendall(frame(CH_HELLO, hello("test-chain", "n1", bytes(32))))  # claims to be n1
    s.sendall(frame(1, bytes(64)))  # a proof it cannot make
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
    assert r.feed(data[3:]) == [(2, b"abc"), (3, b"")]
    with pytest.raises(HandshakeError):
        FrameReader().feed((MAX_FRAME + 1).to_bytes(4, "big") + b"\x02")
