"""Answers peers' SyncRequests from the block store on a thread of its own, so reading blocks
for a peer never holds up the consensus thread.

Every request passes the peer's `SyncLimiter` (rate and de-duplication) and waits in a small
bounded queue; what the limiter or a full queue refuses is dropped and counted
(`sync_refused{reason}`), and reported to `on_refused` so the node can disconnect a peer that
keeps doing it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Hashable

from ..metrics import Metrics
from ..peers.limits import SyncLimiter
from ..storage import Repository
from ..supervisor import Supervisor
from .types import MAX_MESSAGE_BYTES, SyncEntry, SyncRequest, SyncResponse, encode_message

log = logging.getLogger(__name__)


class SyncServer:
    def __init__(self, repo: Repository, send: Callable[[Hashable, bytes], bool], metrics: Metrics, *,
                 limiter: SyncLimiter | None = None, batch: int = 16, max_queue: int = 64,
                 on_refused: Callable[[Hashable], None] = lambda peer: None,
                 supervisor: Supervisor | None = None) -> None:
        self.repo, self.send, self.metrics = repo, send, metrics
        self.limiter = limiter or SyncLimiter()
        self.batch, self.on_refused = batch, on_refused
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._thread = (supervisor or Supervisor()).thread("sync-server", self._run)

    def submit(self, peer: Hashable, req: SyncRequest) -> str:
        """From any thread, never blocks: "queued", or why the request was dropped."""
        verdict = self.limiter.admit(peer, req.from_height, int(time.monotonic() * 1000))
        if verdict == "ok":
            try:
                self._queue.put_nowait((peer, req.from_height, min(req.max_count, self.batch)))
                return "queued"
            except queue.Full:
                verdict = "busy"
        self.metrics.inc("sync_refused", verdict)
        self.on_refused(peer)
        return verdict

    def entries(self, from_height: int, count: int) -> list[SyncEntry]:
        out, size = [], 64
        for h in range(from_height, from_height + count):
            found = self.repo.block(h)
            if found is None:
                break
            block, cert = found
            raw = block.encode()
            size += len(raw) + len(cert) + 16
            if out and size > MAX_MESSAGE_BYTES:
                break
            out.append(SyncEntry(h, raw, cert))
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                peer, from_height, count = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            found = self.entries(from_height, count)   # a store error fails the node
            if found:
                self.send(peer, encode_message(SyncResponse(tuple(found))))
                self.metrics.inc("sync_served")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
