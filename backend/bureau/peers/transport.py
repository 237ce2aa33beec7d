"""TCP shell of the peer links: one outbound link to every other bureau (it only sends) and the
inbound links they open to us (we only read). Frames and handshake are in `handshake`.

Back-pressure: inbound frames are handed to `on_message`, which may block (a full consensus
inbox then slows the sender's TCP stream); outbound frames wait in a queue bounded in bytes,
and a frame that would overflow it is dropped and counted — consensus recovers lost messages
by its own re-sending and sync, and a dropped transaction batch still waits in its origin's
mempool.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from typing import Callable

from ..ledger.genesis import Genesis
from .handshake import (CH_HELLO, CH_PROOF, FrameReader, HandshakeError, check_proof, frame, hello, parse_hello,
                        proof_message)

log = logging.getLogger(__name__)
OnMessage = Callable[[str, int, bytes], None]


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


class _Outbound:
    def __init__(self, owner: "PeerTransport", peer_id: str, address: str) -> None:
        self.owner, self.peer_id, self.address = owner, peer_id, address
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.cond = threading.Condition()
        self.connected = False
        self.thread = threading.Thread(target=self._run, name=f"peer-out-{peer_id}", daemon=True)

    def put(self, data: bytes) -> bool:
        with self.cond:
            if self.queued_bytes + len(data) > self.owner.max_queue_bytes:
                return False
            self.queue.append(data)
            self.queued_bytes += len(data)
            self.cond.notify()
            return True

    def _take(self) -> bytes | None:
        with self.cond:
            while not self.queue and not self.owner.stopping.is_set():
                self.cond.wait(0.5)
            if not self.queue:
                return None
            data = self.queue.popleft()
            self.queued_bytes -= len(data)
            return data

    def _run(self) -> None:
        backoff = 0.05
        while not self.owner.stopping.is_set():
            try:
                sock = socket.create_connection(_split_addr(self.address), timeout=2.0)
            except OSError:
                self.owner.stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            try:
                sock.settimeout(5.0)
                self.owner._handshake(sock, expect=self.peer_id)
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.connected = True
                backoff = 0.05
                while not self.owner.stopping.is_set():
                    data = self._take()
                    if data is None:
                        continue
                    # Gather what else waits into one write: fewer syscalls under load.
                    parts = [data]
                    with self.cond:
                        while self.queue and sum(map(len, parts)) < 256 * 1024:
                            d = self.queue.popleft()
                            self.queued_bytes -= len(d)
                            parts.append(d)
                    sock.sendall(b"".join(parts))
            except (OSError, HandshakeError) as e:
                log.info("link to %s lost: %s", self.peer_id, e)
            finally:
                self.connected = False
                sock.close()
            self.owner.stopping.wait(backoff)
            backoff = min(backoff * 2, 2.0)


class PeerTransport:
    def __init__(self, genesis: Genesis, node_id: str, signing_key, listen: str, on_message: OnMessage,
                 *, max_queue_bytes: int = 64 * 1024 * 1024, addresses: dict[str, str] | None = None) -> None:
        self.genesis, self.node_id, self.key = genesis, node_id, signing_key
        self.on_message = on_message
        self.max_queue_bytes = max_queue_bytes
        self.stopping = threading.Event()
        self.keys = {v.id: v.public_key for v in genesis.validators}
        addresses = addresses or {v.id: v.address for v in genesis.validators}
        self.listen_addr = listen
        self.out = {pid: _Outbound(self, pid, addr) for pid, addr in addresses.items() if pid != node_id}
        self.dropped = 0
        self._server: socket.socket | None = None
        self._inbound: set[socket.socket] = set()

    # ---- public ------------------------------------------------------------------------

    def start(self) -> None:
        host, port = _split_addr(self.listen_addr)
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, port))
        self._server.listen(64)
        threading.Thread(target=self._accept, name="peer-listen", daemon=True).start()
        for o in self.out.values():
            o.thread.start()

    def send(self, peer_id: str, channel: int, payload: bytes) -> bool:
        link = self.out.get(peer_id)
        if link is None:
            return False
        ok = link.put(frame(channel, payload))
        if not ok:
            self.dropped += 1
        return ok

    def broadcast(self, channel: int, payload: bytes) -> None:
        data = frame(channel, payload)
        for link in self.out.values():
            if not link.put(data):
                self.dropped += 1

    def connected_peers(self) -> list[str]:
        return [pid for pid, o in self.out.items() if o.connected]

    def stop(self) -> None:
        self.stopping.set()
        if self._server:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._server.close()
        for s in list(self._inbound):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for o in self.out.values():
            with o.cond:
                o.cond.notify_all()

    # ---- inbound -----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), name="peer-in", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        self._inbound.add(sock)
        try:
            sock.settimeout(5.0)
            peer_id, reader = self._handshake(sock, expect=None)
            sock.settimeout(None)
            while not self.stopping.is_set():
                data = sock.recv(1 << 16)
                if not data:
                    return
                for channel, payload in reader.feed(data):
                    self.on_message(peer_id, channel, payload)
        except (OSError, HandshakeError) as e:
            log.info("inbound peer link closed: %s", e)
        finally:
            self._inbound.discard(sock)
            sock.close()

    # ---- handshake (both directions) ---------------------------------------------------

    def _handshake(self, sock: socket.socket, expect: str | None) -> tuple[str, FrameReader]:
        chain_id = self.genesis.chain_id
        my_nonce = os.urandom(32)
        sock.sendall(frame(CH_HELLO, hello(chain_id, self.node_id, my_nonce)))
        reader = FrameReader()
        frames: list[tuple[int, bytes]] = []

        def next_frame() -> tuple[int, bytes]:
            deadline = time.monotonic() + 5
            while not frames:
                if time.monotonic() > deadline:
                    raise HandshakeError("handshake timed out")
                data = sock.recv(4096)
                if not data:
                    raise HandshakeError("peer closed during handshake")
                frames.extend(reader.feed(data))
            return frames.pop(0)

        ch, payload = next_frame()
        if ch != CH_HELLO:
            raise HandshakeError("expected hello")
        their_chain, peer_id, their_nonce = parse_hello(payload)
        if their_chain != chain_id:
            raise HandshakeError(f"peer is on chain {their_chain!r}")
        if peer_id not in self.keys or peer_id == self.node_id or (expect and peer_id != expect):
            raise HandshakeError(f"unexpected peer {peer_id!r}")
        sig = self.key.sign(proof_message(chain_id, self.node_id, peer_id, my_nonce, their_nonce)).signature
        sock.sendall(frame(CH_PROOF, sig))
        ch, payload = next_frame()
        if ch != CH_PROOF:
            raise HandshakeError("expected proof")
        check_proof(self.keys[peer_id], payload, chain_id, peer_id, self.node_id, their_nonce, my_nonce)
        if frames:  # data that came in right behind the proof
            for channel, data in frames:
                self.on_message(peer_id, channel, data)
        return peer_id, reader
