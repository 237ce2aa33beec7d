"""`bureau join`: a new or restored bureau fetches a snapshot of the state from a running node,
verifies it (ledger/snapshot.py), cross-checks its history with other bureaus and loads it into
its empty database; the node then starts from the snapshot's height and fetches only the blocks
after it from its peers. The snapshot endpoints are operator only: the requests carry the
operator token as `Authorization: Bearer` (docs/consensus.md, "Joining from a snapshot")."""

from __future__ import annotations

import logging
import time

import httpx

from ..ledger import snapshot
from ..ledger.genesis import Genesis
from ..storage import Repository
from .actions import Verify
from .httpclient import shared_client

log = logging.getLogger(__name__)
CROSS_CHECK_WAIT_S = 60.0  # a second bureau a little behind the first reaches the height meanwhile


def _get(url: str, token: str, verify: Verify) -> dict:
    try:
        resp = shared_client(verify).get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    except httpx.HTTPError as e:
        raise snapshot.SnapshotError("unreachable", f"{url}: {e}") from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200:
        raise snapshot.SnapshotError(str(body.get("error", resp.status_code)),
                                     f"{url}: {body.get('detail', resp.text[:200])}")
    return body


def fetch(source: str, token: str, verify: Verify = True) -> snapshot.StateSnapshot:
    """The snapshot `source` serves, read chunk by chunk (not yet verified)."""
    base = source.rstrip("/")
    manifest = _get(base + "/v1/snapshot", token, verify)
    chunks = [_get(f"{base}/v1/snapshot/{manifest['height']}/chunks/{i}", token, verify)
              for i in range(len(manifest["chunks"]))]
    return snapshot.from_wire(manifest, chunks)


def cross_check(snap: snapshot.StateSnapshot, other: str, token: str, verify: Verify = True,
                wait_s: float = CROSS_CHECK_WAIT_S) -> None:
    """SnapshotError("history_differs") unless bureau `other` has the same history at the height."""
    url = f"{other.rstrip('/')}/v1/snapshot/{snap.height}/history"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            answer = _get(url, token, verify)
            break
        except snapshot.SnapshotError as e:
            if e.reason != "not_kept" or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    if answer["history_digest"] != snap.history_digest():
        raise snapshot.SnapshotError("history_differs", f"{other} has another history at height {snap.height} "
                                                        f"(digest {answer['history_digest']}, the snapshot's "
                                                        f"{snap.history_digest()}): do not trust either alone")


def join(genesis: Genesis, database_url: str, source: str, others: list[str], token: str,
         verify: Verify = True) -> int:
    """Fetch, verify, cross-check and load; the snapshot's height."""
    repo = Repository(database_url)
    try:
        if repo.head_height() > 0:
            raise snapshot.SnapshotError("has_chain", f"the database already holds a chain up to block "
                                                      f"{repo.head_height()}; start it with `bureau run`")
        snap = fetch(source, token, verify)
        state = snapshot.restore(genesis, snap)
        for other in others:
            cross_check(snap, other, token, verify)
        repo.load_snapshot(snap, state, " ".join([source, *others]))
    finally:
        repo.close()
    log.info("joined from the snapshot of %s at height %d (%d records, %d receipts of history)", source,
             snap.height, len(snap.records), len(snap.receipts),
             extra={"event": "snapshot_loaded", "height": snap.height, "source": source})
    return snap.height
