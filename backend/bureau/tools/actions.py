"""A signed operator action sent to a bureau node's API, and the wait for its outcome on chain.
Used by the local stack (`Stack.operator`), the technician's enrollment and the tests."""

from __future__ import annotations

import ssl
import time

import httpx

from ..api.auth import authorization_header
from .httpclient import shared_client

Verify = ssl.SSLContext | bool  # httpx's `verify`: bureau.tools.pki.http_verify(ca_file)


class ActionRefused(RuntimeError):
    """The node refused the action, at the API or in a block: a machine reason and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def submit_action(node_url: str, tx: bytes, verify: Verify = True) -> str:
    """POST the signed action; its tx hash (hex) once the node has taken it for a block."""
    resp = shared_client(verify).post(f"{node_url.rstrip('/')}/v1/operator/actions", json={"tx": tx.hex()},
                                      timeout=10)
    if resp.status_code != 202:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        raise ActionRefused(str(body.get("error", resp.status_code)), str(body.get("detail", resp.text[:300])))
    return resp.json()["tx_hash"]


def operator_get(node_url: str, path: str, key, operator_id: str, node_id: str | None = None,
                 verify: Verify = True, timeout: float = 5.0) -> httpx.Response:
    """GET an operator-only endpoint with a request signed by the operator's key (EV-Sig
    operator=..., api/auth.py); `node_id` defaults to the id the node reports."""
    base = node_url.rstrip("/")
    http = shared_client(verify)
    if node_id is None:
        node_id = http.get(base + "/v1/node/status", timeout=timeout).json()["node_id"]
    header = authorization_header(key, operator_id, "GET", path, node_id=node_id, principal="operator")
    return http.get(base + path, headers={"Authorization": header}, timeout=timeout)


def wait_committed(node_url: str, tx_hashes: list[str], timeout: float = 30.0, verify: Verify = True, *, key,
                   operator_id: str, node_id: str | None = None) -> list[int]:
    """The block height each action committed at, once every one is committed; ActionRefused for
    one refused on chain (or for the operator's credentials refused), TimeoutError for those
    still waiting at the deadline. The status is asked as the operator `operator_id`, signed
    with its `key`."""
    if node_id is None:
        node_id = shared_client(verify).get(f"{node_url.rstrip('/')}/v1/node/status", timeout=5).json()["node_id"]
    deadline = time.monotonic() + timeout
    waiting = list(tx_hashes)
    heights = []
    while waiting:
        resp = operator_get(node_url, f"/v1/operator/actions/{waiting[0]}", key, operator_id, node_id, verify)
        st = resp.json()
        if resp.status_code == 401:
            raise ActionRefused(str(st.get("error")), str(st.get("detail")))
        if st.get("status") == "committed":
            waiting.pop(0)
            heights.append(st["height"])
            continue
        if st.get("status") == "refused":
            raise ActionRefused(str(st.get("reason")), str(st.get("detail")))
        if time.monotonic() > deadline:
            raise TimeoutError(f"operator actions not committed within {timeout:.0f} s: {waiting}")
        time.sleep(0.05)
    return heights
