"""State sync for bureaus (operator only): the manifest and chunks of a snapshot of the state at
this node's head, and the history digest at a height, which a joining bureau cross-checks with a
second node (ledger/snapshot.py, docs/consensus.md "Joining from a snapshot").

The node keeps one snapshot, taken when the manifest is asked for and the kept one is older than
`REUSE_S`: a joining bureau reads the chunks of the height its manifest named, and a chunk of any
other height is refused `not_kept` naming the height kept."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import Parameter

from ..chain import Chain
from ..ledger import snapshot
from .errors import ApiError, refusals
from .operator_auth import require_operator

REUSE_S = 30.0
Height = Annotated[int, Parameter(ge=0, le=2**63 - 1, description="the snapshot's block height")]
Index = Annotated[int, Parameter(ge=0, le=2**31 - 1, description="the chunk's index, from 0")]


class SnapshotManifest(msgspec.Struct):
    """docs/consensus.md, "Joining from a snapshot": wire format v2."""
    v: int
    height: int
    header: str  # hex of the header bytes of block `height`
    certificate: str  # its commit certificate
    validator_changes: list[dict[str, Any]]  # as GET /v1/validators serves them, up to `height`
    items: int
    chunks: list[str]  # SHA-256 hex of each chunk's canonical JSON, in order
    history_digest: str


class SnapshotChunk(msgspec.Struct):
    v: int
    height: int
    index: int
    items: list[list[Any]]  # ["record", key, value], ["tariff", doc], then the history items


class SnapshotHistory(msgspec.Struct):
    v: int
    height: int
    history_digest: str
    items: int


class SnapshotKeeper:
    """The one snapshot this node serves, its manifest and chunks."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._lock = threading.Lock()
        self._kept: tuple[float, dict, list[dict]] | None = None

    def manifest(self) -> dict:
        with self._lock:
            if self._kept is None or time.monotonic() - self._kept[0] > REUSE_S:
                try:
                    snap = self.chain.repo.take_snapshot(self.chain.state)
                except snapshot.SnapshotError as e:
                    raise ApiError(e.reason, e.detail) from None
                self._kept = (time.monotonic(), *snapshot.manifest_and_chunks(snap))
            return self._kept[1]

    def chunk(self, height: int, index: int) -> dict:
        kept = self._kept
        if kept is None or kept[1]["height"] != height:
            held = f"the snapshot kept is of height {kept[1]['height']}" if kept else "no snapshot is kept"
            raise ApiError("not_kept", f"no snapshot of height {height} here ({held}); ask GET /v1/snapshot again")
        if not 0 <= index < len(kept[2]):
            raise ApiError("not_found", f"the snapshot of height {height} has chunks 0..{len(kept[2]) - 1}")
        return kept[2][index]

    def history(self, height: int) -> dict:
        repo = self.chain.repo
        lowest = max(1, repo.first_kept() - 1)
        if not lowest <= height <= self.chain.height:
            raise ApiError("not_kept", f"this node answers the history of heights {lowest} to "
                                       f"{self.chain.height}, not {height}")
        header, _ = repo.header(height)
        items = snapshot.StateSnapshot(height, "", "", [], {},
                                       **repo.snapshot_history(self.chain.genesis, height, header.time_ms))
        return {"v": snapshot.VERSION, "height": height, "history_digest": items.history_digest(),
                "items": len(items.history_items())}


class SnapshotController(Controller):
    path = "/v1/snapshot"
    tags = ["state sync (operator only)"]

    @get("", summary="The manifest of a snapshot of the state at this node's head (operator only)",
         sync_to_thread=True, responses=refusals("not_kept", operator_only=True, takes_input=False))
    def manifest(self, request: Request, keeper: NamedDependency[SnapshotKeeper]) -> SnapshotManifest:
        require_operator(request)
        return SnapshotManifest(**keeper.manifest())

    @get("/{height:int}/chunks/{index:int}", summary="One chunk of the kept snapshot (operator only)",
         sync_to_thread=True, responses=refusals("not_kept", "not_found", operator_only=True))
    def chunk(self, request: Request, keeper: NamedDependency[SnapshotKeeper], height: Height,
              index: Index) -> SnapshotChunk:
        require_operator(request)
        return SnapshotChunk(**keeper.chunk(height, index))

    @get("/{height:int}/history", summary="The digest of a snapshot's history at a height, to cross-check one "
                                         "(operator only)",
         sync_to_thread=True, responses=refusals("not_kept", operator_only=True))
    def history(self, request: Request, keeper: NamedDependency[SnapshotKeeper], height: Height) -> SnapshotHistory:
        require_operator(request)
        return SnapshotHistory(**keeper.history(height))
