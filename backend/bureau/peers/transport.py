"""TCP shell of the peer links: one outbound link to every other bureau (it only sends) and the
inbound links they open to us (we only read). Frames, handshake and sealing are in `handshake`:
every frame after login is sealed by the sender's link thread and opened by the receiver's
reader; one that does not open closes the link (`peer_disconnected{reason=bad_frame}`) without
a ban, since whoever forged it need not be the peer.

Inbound frames are handed to `on_message`, which must not block (the node's per-peer inbox
drops and counts instead); outbound frames wait in a queue bounded in bytes, and a frame that
would overflow it is dropped and counted — consensus recovers lost messages by its own
re-sending and sync, and a dropped transaction batch still waits in its origin's mempool.
Frames for a link that is down are dropped, not kept (`peer_send_dropped{reason=link_down}`): a
peer back after a partition should hear the current round first, not a backlog of stale votes
and batches of transactions committed meanwhile, which would fill the queue and push out what
is current.

What an unauthenticated caller can hold: at most `max_pending` connections in the handshake
(the oldest is closed to make room for a new one), each for at most `handshake_timeout_s`, with
frames of at most MAX_HANDSHAKE_FRAME bytes. After login there is one inbound link per peer id:
a new login of the same id replaces the old link (only the key holder can log in, and a peer
that restarted must not wait for its half-open predecessor to time out). `disconnect` closes a
peer's inbound link and refuses its logins for a while.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from typing import Callable

from ..ledger.genesis import Genesis
from ..ledger.validators import Validator
from ..metrics import Metrics
from ..supervisor import Supervisor
from .handshake import (CH_HELLO, CH_PROOF, MAX_FRAME, MAX_HANDSHAKE_FRAME, SEAL_OVERHEAD, FrameAuthError, FrameReader,
                        HandshakeError, Initiator, Responder, Session, frame, split_plain)

log = logging.getLogger(__name__)
OnMessage = Callable[[str, int, bytes], None]


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def _check_size(payload: bytes) -> None:
    if len(payload) + SEAL_OVERHEAD > MAX_FRAME:
        raise ValueError("frame over the size limit")


def close_socket(sock: socket.socket) -> None:
    """Shut a socket down and close it, waking any thread blocked in recv() on it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv() on it
    except OSError:
        pass
    sock.close()


class _Frames:
    """Whole frames off a socket before a deadline (the handshake)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline
        self.reader = FrameReader(MAX_HANDSHAKE_FRAME)
        self.pending: list[bytes] = []  # bodies read but not yet taken

    def expect(self, channel: int) -> bytes:
        while not self.pending:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise HandshakeError("handshake timed out")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                raise HandshakeError("handshake timed out") from None
            if not data:
                raise HandshakeError("peer closed during handshake")
            self.pending.extend(self.reader.feed(data))
        ch, payload = split_plain(self.pending.pop(0))
        if ch != channel:
            raise HandshakeError(f"expected channel {channel}, got {ch}")
        return payload


class _Outbound:
    """The link we dial to one peer. Frames wait in plain (channel, payload) and are sealed by
    the link's own thread as they go out: the sender pays no crypto, and a frame broadcast to
    every peer is queued once per link without a copy."""

    def __init__(self, owner: "PeerTransport", peer_id: str, address: str) -> None:
        self.owner, self.peer_id, self.address = owner, peer_id, address
        self.queue: deque[tuple[int, bytes]] = deque()
        self.queued_bytes = 0
        self.cond = threading.Condition()
        self.connected = False
        self.stopping = threading.Event()  # the transport stops, or the peer left the validator sets
        self.thread = owner.supervisor.thread(f"peer-out-{peer_id}", self._run)

    def put(self, channel: int, payload: bytes) -> str | None:
        """None when queued, else why the frame was dropped."""
        with self.cond:
            if not self.connected:
                return "link_down"
            if self.queued_bytes + len(payload) > self.owner.max_queue_bytes:
                return "queue_full"
            self.queue.append((channel, payload))
            self.queued_bytes += len(payload)
            self.cond.notify()
            return None

    def _set_connected(self, up: bool) -> None:
        """A link that goes down forgets what waits for it: see the module's docstring."""
        with self.cond:
            self.connected = up
            if not up:
                self.queue.clear()
                self.queued_bytes = 0

    def _take(self, max_bytes: int) -> list[tuple[int, bytes]]:
        """What waits, up to about `max_bytes` (at least one frame); empty when stopping."""
        with self.cond:
            while not self.queue and not self.stopping.is_set():
                self.cond.wait(0.5)
            out, size = [], 0
            while self.queue and (not out or size < max_bytes):
                item = self.queue.popleft()
                self.queued_bytes -= len(item[1])
                size += len(item[1])
                out.append(item)
            return out

    def _login(self, sock: socket.socket) -> Session:
        o = self.owner
        hs = Initiator(o.genesis.chain_id, o.node_id, self.peer_id, o.key, o.keys)
        frames = _Frames(sock, time.monotonic() + o.handshake_timeout_s)
        sock.sendall(frame(CH_HELLO, hs.hello()))
        sock.sendall(frame(CH_PROOF, hs.on_hello(frames.expect(CH_HELLO))))
        return hs.on_proof(frames.expect(CH_PROOF))

    def _run(self) -> None:
        backoff = 0.05
        while not self.stopping.is_set():
            try:
                sock = socket.create_connection(_split_addr(self.address), timeout=2.0)
            except OSError:
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            try:
                sealer = self._login(sock).outgoing
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._set_connected(True)
                backoff = 0.05
                while not self.stopping.is_set():
                    # what else waits goes in the same write: fewer syscalls under load
                    batch = self._take(256 * 1024)
                    if batch:
                        sock.sendall(b"".join(sealer.seal(ch, payload) for ch, payload in batch))
            except (OSError, HandshakeError) as e:
                log.info("link to %s lost: %s", self.peer_id, e)
            finally:
                self._set_connected(False)
                sock.close()
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 2.0)


class PeerTransport:
    def __init__(self, genesis: Genesis, node_id: str, signing_key, listen: str, on_message: OnMessage,
                 *, max_queue_bytes: int = 64 * 1024 * 1024, addresses: dict[str, str] | None = None,
                 metrics: Metrics | None = None, max_pending: int = 16, handshake_timeout_s: float = 5.0,
                 supervisor: Supervisor | None = None, peers: dict[str, Validator] | None = None) -> None:
        """`peers`: the validators to link with by id (default: the genesis's); `addresses`
        overrides where to dial some of them."""
        self.supervisor = supervisor or Supervisor()
        self.genesis, self.node_id, self.key = genesis, node_id, signing_key
        self.on_message = on_message
        self.max_queue_bytes = max_queue_bytes
        self.metrics = metrics or Metrics()
        self.max_pending, self.handshake_timeout_s = max_pending, handshake_timeout_s
        self.stopping = threading.Event()
        peers = peers if peers is not None else {v.id: v for v in genesis.validators}
        self.keys = {vid: v.public_key for vid, v in peers.items()}
        self._address_overrides = dict(addresses or {})
        addresses = addresses or {vid: v.address for vid, v in peers.items()}
        self.listen_addr = listen
        self.out = {pid: _Outbound(self, pid, addr) for pid, addr in addresses.items() if pid != node_id}
        self._started = False
        self.dropped = 0
        self._server: socket.socket | None = None
        self._lock = threading.Lock()
        self._pending: dict[socket.socket, float] = {}  # in the handshake, by accept time
        self._inbound: dict[str, socket.socket] = {}    # one authenticated link per peer id
        self._banned_until: dict[str, float] = {}

    # ---- public ------------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        if set(self.keys) <= {self.node_id}:
            return  # a lone validator: no peer could log in, none to dial
        self._listen()
        for o in list(self.out.values()):
            o.thread.start()

    def set_peers(self, peers: dict[str, Validator]) -> None:
        """The validators to link with are now `peers` (a validator-set change was decided): new
        ones are dialled at their address (unless overridden) and may log in; links to ones no
        longer named stop."""
        self.keys = {vid: v.public_key for vid, v in peers.items()}  # a new dict: handshakes read it whole
        for pid in [p for p in self.out if p not in peers]:
            link = self.out.pop(pid)
            link.stopping.set()
            with link.cond:
                link.cond.notify_all()
            self.disconnect(pid)
        for pid, v in peers.items():
            addr = self._address_overrides.get(pid, v.address)
            if pid == self.node_id or not addr or (pid in self.out and self.out[pid].address == addr):
                continue
            old = self.out.pop(pid, None)
            if old is not None:
                old.stopping.set()
            link = self.out[pid] = _Outbound(self, pid, addr)
            if self._started:
                link.thread.start()
        if self._started and self._server is None and set(self.keys) - {self.node_id}:
            self._listen()

    def _listen(self) -> None:
        host, port = _split_addr(self.listen_addr)
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, port))
        self._server.listen(64)
        self.supervisor.thread("peer-listen", self._accept).start()

    def send(self, peer_id: str, channel: int, payload: bytes) -> bool:
        link = self.out.get(peer_id)
        if link is None:
            return False
        _check_size(payload)
        return self._put(link, channel, payload)

    def broadcast(self, channel: int, payload: bytes) -> None:
        _check_size(payload)
        for link in self.out.values():
            self._put(link, channel, payload)

    def _put(self, link: "_Outbound", channel: int, payload: bytes) -> bool:
        dropped = link.put(channel, payload)
        if dropped is not None:
            self.dropped += 1
            self.metrics.inc("peer_send_dropped", dropped)
        return dropped is None

    def connected_peers(self) -> list[str]:
        """Peers our outbound links are logged in to."""
        return [pid for pid, o in self.out.items() if o.connected]

    def inbound_peers(self) -> list[str]:
        """Peers logged in on an inbound link."""
        with self._lock:
            return sorted(self._inbound)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def disconnect(self, peer_id: str, ban_s: float = 0.0) -> None:
        """Close `peer_id`'s inbound link; refuse its logins for `ban_s` seconds."""
        with self._lock:
            if ban_s > 0:
                self._banned_until[peer_id] = time.monotonic() + ban_s
            sock = self._inbound.pop(peer_id, None)
        if sock is not None:
            close_socket(sock)

    def stop(self) -> None:
        self.stopping.set()
        if self._server:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._server.close()
        with self._lock:
            socks = list(self._pending) + list(self._inbound.values())
        for s in socks:
            close_socket(s)
        for o in list(self.out.values()):
            o.stopping.set()
            with o.cond:
                o.cond.notify_all()

    # ---- inbound -----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                evict = None
                if len(self._pending) >= self.max_pending:
                    evict = min(self._pending, key=self._pending.get)
                    del self._pending[evict]
                self._pending[sock] = time.monotonic()
            if evict is not None:
                self.metrics.inc("peer_refused", "pending_full")
                close_socket(evict)
            self.supervisor.thread("peer-in", self._serve, sock).start()

    def _login(self, sock: socket.socket) -> tuple[Session, FrameReader, list[bytes]]:
        hs = Responder(self.genesis.chain_id, self.node_id, self.key, self.keys)
        frames = _Frames(sock, time.monotonic() + self.handshake_timeout_s)
        reply = hs.on_hello(frames.expect(CH_HELLO))
        if self._banned_until.get(hs.claimed, 0) > time.monotonic():
            raise HandshakeError(f"{hs.claimed} is disconnected for flooding")
        sock.sendall(frame(CH_HELLO, reply))
        sock.sendall(frame(CH_PROOF, hs.on_proof(frames.expect(CH_PROOF))))
        return hs.session, frames.reader, frames.pending

    def _serve(self, sock: socket.socket) -> None:
        peer_id = None
        try:
            try:
                session, reader, early = self._login(sock)
            except HandshakeError as e:
                self.metrics.inc("peer_refused", "handshake")
                raise e
            peer_id, opener = session.peer, session.incoming
            with self._lock:
                if self._pending.pop(sock, None) is None:
                    raise HandshakeError("evicted during the handshake")
                old = self._inbound.get(peer_id)
                self._inbound[peer_id] = sock
            if old is not None:
                self.metrics.inc("peer_disconnected", "replaced")
                close_socket(old)
            reader.max_frame = MAX_FRAME
            sock.settimeout(None)
            for body in early:  # frames that came in right behind the proof
                self.on_message(peer_id, *opener.open(body))
            while not self.stopping.is_set():
                data = sock.recv(1 << 16)
                if not data:
                    return
                for body in reader.feed(data):
                    self.on_message(peer_id, *opener.open(body))
        except FrameAuthError as e:
            log.warning("inbound peer link %s dropped: %s", peer_id, e)
            self.metrics.inc("peer_disconnected", "bad_frame")
        except (OSError, HandshakeError) as e:
            log.info("inbound peer link %s closed: %s", peer_id or "(not logged in)", e)
        finally:
            with self._lock:
                self._pending.pop(sock, None)
                if peer_id is not None and self._inbound.get(peer_id) is sock:
                    del self._inbound[peer_id]
            sock.close()
