"""Checks a state proof (proof JSON v1, docs/state.md) against a state root: what a phone, the
driver CLI or anyone holding a certified header runs. Strict: any malformed field is a refusal
with its reason, never an exception."""

from __future__ import annotations

import re

from .statemap import DEPTH, EMPTY, PROOF_VERSION, key_path, leaf_hash, node_hash, value_hash

PROOF_FIELDS = frozenset({"v", "key", "value", "siblings", "other"})
OTHER_FIELDS = frozenset({"path", "value_hash"})
HEX32_RE = re.compile(r"[0-9a-f]{64}")


def _hex32(text) -> bytes | None:
    return bytes.fromhex(text) if isinstance(text, str) and HEX32_RE.fullmatch(text) else None


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 text, so no path
        return None


def verify_state_proof(root: bytes, proof: dict) -> tuple[bool, str]:
    """(True, "") when `proof` shows its key holding its value (or, value null, holding none)
    under `root`; else (False, the reason)."""
    if not isinstance(root, (bytes, bytearray)) or len(root) != 32:
        return False, "the root is not 32 bytes"
    if not isinstance(proof, dict):
        return False, "the proof is not a JSON object"
    if set(proof) != PROOF_FIELDS:
        return False, f"the proof's fields are {sorted(proof)}, not {sorted(PROOF_FIELDS)}"
    if type(proof["v"]) is not int or proof["v"] != PROOF_VERSION:
        return False, f"proof version {proof['v']!r} is not {PROOF_VERSION}"
    key, value, siblings, other = proof["key"], proof["value"], proof["siblings"], proof["other"]
    if not isinstance(key, str) or _utf8(key) is None:
        return False, "key is not a text"
    if value is not None and (not isinstance(value, str) or _utf8(value) is None):
        return False, "value is neither a text nor null"
    if not isinstance(siblings, list):
        return False, "siblings is not a list"
    if len(siblings) > DEPTH:
        return False, f"{len(siblings)} siblings, more than the tree's depth {DEPTH}"
    sibling_hashes = [_hex32(s) for s in siblings]
    if None in sibling_hashes:
        return False, f"sibling {sibling_hashes.index(None)} is not 64 lowercase hex digits"
    path = key_path(key)
    bits, depth = int.from_bytes(path, "big"), len(siblings)
    if value is not None:
        if other is not None:
            return False, "a proof of a present key has no other leaf"
        node = leaf_hash(path, value_hash(value))
    elif other is not None:
        if not isinstance(other, dict) or set(other) != OTHER_FIELDS:
            return False, f"other is not an object of {sorted(OTHER_FIELDS)}"
        other_path, other_vhash = _hex32(other["path"]), _hex32(other["value_hash"])
        if other_path is None or other_vhash is None:
            return False, "other's path and value_hash are not 64 lowercase hex digits each"
        if other_path == path:
            return False, "other's path is the key's own: it would prove the key present"
        differing = int.from_bytes(other_path, "big") ^ bits
        if depth and differing >> (DEPTH - depth):
            return False, f"other's path does not share the key's first {depth} bits"
        node = leaf_hash(other_path, other_vhash)
    else:
        node = EMPTY
    for d in range(depth - 1, -1, -1):
        sibling = sibling_hashes[d]
        node = node_hash(sibling, node) if (bits >> (DEPTH - 1 - d)) & 1 else node_hash(node, sibling)
    if node != root:
        return False, "the proof does not lead to the root"
    return True, ""
