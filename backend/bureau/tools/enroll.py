"""Enrolling a charger's key on chain by a signed operator action (`enroll_charger`) through a
bureau node's API. Used by the technician's `just flash` (scripts/flash.py, which reads the key
over the serial cable) and by `just up` for its simulated chargers."""

from __future__ import annotations

from pathlib import Path

from nacl.signing import SigningKey

from ..crypto import KeyFileError, load_key
from ..ledger.tx import operator_action
from .actions import ActionRefused, Verify, submit_action, wait_committed
from .httpclient import shared_client


class EnrollError(Exception):
    """Why a charger could not be enrolled: a short machine reason and a human detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def load_operator_key(path: Path) -> SigningKey:
    """The operator's signing key (32-byte seed in hex). A missing file is an error: a new key
    would be one the chain does not know."""
    try:
        return load_key(path)
    except KeyFileError as e:
        raise EnrollError("no_operator_key" if e.reason == "missing" else "bad_operator_key", e.detail) from None


def operator_id_of(genesis: dict, key: SigningKey) -> str:
    """The genesis operator whose key this is."""
    public = key.verify_key.encode().hex()
    for op in genesis.get("operators", []):
        if op.get("public_key") == public:
            return op["id"]
    raise EnrollError("unknown_operator", "the operator key is not one of the genesis operators")


def enrolled_key(node_url: str, charger_id: str, verify: Verify = True) -> str | None:
    """The public key (hex) the chain has for `charger_id`, None when it is not enrolled."""
    r = shared_client(verify).get(f"{node_url}/v1/chargers/{charger_id}", timeout=10)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()["public_key"]


def enroll_charger(node_url: str, key: SigningKey, charger_id: str, public_key: str, *,
                   timeout: float = 30.0, verify: Verify = True) -> int | None:
    """Enroll `public_key` for `charger_id` and wait until it is committed; the height it
    committed at, or None when the chain already has this very key. Another key for the
    charger is an error (the old key must be retired first)."""
    node_url = node_url.rstrip("/")
    have = enrolled_key(node_url, charger_id, verify)
    if have == public_key:
        return None
    if have is not None:
        raise EnrollError("charger_exists", f"{charger_id} is enrolled with another key ({have[:16]}…)")
    genesis = shared_client(verify).get(f"{node_url}/v1/genesis", timeout=10).json()
    operator_id = operator_id_of(genesis, key)
    tx = operator_action(key, operator_id, "enroll_charger", {"charger_id": charger_id, "public_key": public_key})
    try:
        [height] = wait_committed(node_url, [submit_action(node_url, tx, verify)], timeout, verify, key=key,
                                  operator_id=operator_id)
    except ActionRefused as e:
        raise EnrollError("refused", f"enroll_charger refused: {e}") from None
    except TimeoutError:
        raise EnrollError("not_committed", f"enroll_charger not committed within {timeout:.0f} s") from None
    if enrolled_key(node_url, charger_id, verify) != public_key:
        raise EnrollError("not_enrolled", f"the node does not show {charger_id} with the enrolled key")
    return height
