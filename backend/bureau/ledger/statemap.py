"""The ledger state as a persistent binary sparse Merkle map (state root v2, docs/state.md).

Depth 256; a key's path is SHA-256 of its UTF-8 text, bit 0 = the most significant bit of byte 0
(0 = left). leaf = SHA-256(0x00 | path | SHA-256(value)), node = SHA-256(0x01 | left | right), an
empty subtree is 32 zero bytes, and a subtree holding exactly one leaf is that leaf's hash, so the
tree is canonical (one root per content) and a proof is about log2(n) hashes.

Nodes are never changed: `update` copies the paths it touches and returns a new map, so an old
map stays valid (the ledger builds the next map without changing the current one, and readers
take a snapshot without a lock).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Mapping

EMPTY = b"\x00" * 32
PROOF_VERSION = 1
DEPTH = 256


def key_path(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def value_hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def leaf_hash(path: bytes, vhash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + path + vhash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class _Leaf:
    __slots__ = ("hash", "bits", "path", "key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value
        self.path = key_path(key)
        self.bits = int.from_bytes(self.path, "big")
        self.hash = leaf_hash(self.path, value_hash(value))


class _Node:
    """A subtree holding two leaves or more."""
    __slots__ = ("hash", "left", "right")

    def __init__(self, left, right) -> None:
        self.left, self.right = left, right
        self.hash = node_hash(left.hash if left is not None else EMPTY, right.hash if right is not None else EMPTY)


def _bit(bits: int, depth: int) -> int:
    return (bits >> (DEPTH - 1 - depth)) & 1


def _join(left, right):
    """The subtree over two halves, compressed when it holds one leaf or none."""
    if left is None and (right is None or isinstance(right, _Leaf)):
        return right
    if right is None and isinstance(left, _Leaf):
        return left
    return _Node(left, right)


class StateMap:
    """An immutable map of key text to value text with a Merkle root."""
    __slots__ = ("_top",)

    def __init__(self, _top=None) -> None:
        self._top = _top

    @property
    def root(self) -> bytes:
        return self._top.hash if self._top is not None else EMPTY

    def get(self, key: str) -> str | None:
        bits, node, depth = int.from_bytes(key_path(key), "big"), self._top, 0
        while isinstance(node, _Node):
            node = node.right if _bit(bits, depth) else node.left
            depth += 1
        return node.value if node is not None and node.key == key else None

    def update(self, changes: Mapping[str, str | None]) -> StateMap:
        """A new map with each key of `changes` set to its value, or deleted where it is None.
        Each touched node is hashed once for the whole batch."""
        if not changes:
            return self
        # (bits, key, new leaf or None), sorted by path: a subtree's items are one slice
        items = sorted((int.from_bytes(key_path(k), "big"), k, None if v is None else _Leaf(k, v))
                       for k, v in changes.items())
        return StateMap(_update(self._top, 0, items, 0, len(items)))

    def prove(self, key: str) -> dict:
        """The proof JSON v1 of `key`'s value, or of its absence (docs/state.md)."""
        bits, node, depth, siblings = int.from_bytes(key_path(key), "big"), self._top, 0, []
        while isinstance(node, _Node):
            if _bit(bits, depth):
                sibling, node = node.left, node.right
            else:
                sibling, node = node.right, node.left
            siblings.append((sibling.hash if sibling is not None else EMPTY).hex())
            depth += 1
        value = other = None
        if node is not None:
            if node.key == key:
                value = node.value
            else:
                other = {"path": node.path.hex(), "value_hash": value_hash(node.value).hex()}
        return {"v": PROOF_VERSION, "key": key, "value": value, "siblings": siblings, "other": other}


def _split(items: list, lo: int, hi: int, depth: int) -> int:
    """The first index in items[lo:hi] (which share their first `depth` bits) whose bit `depth` is 1."""
    prefix = (items[lo][0] >> (DEPTH - depth)) << (DEPTH - depth) if depth else 0
    return bisect_left(items, (prefix | (1 << (DEPTH - 1 - depth)),), lo, hi)


def _update(node, depth: int, items: list, lo: int, hi: int):
    if lo == hi:
        return node
    if isinstance(node, _Node):
        mid = _split(items, lo, hi, depth)
        return _join(_update(node.left, depth + 1, items, lo, mid), _update(node.right, depth + 1, items, mid, hi))
    leaves = [it[2] for it in items[lo:hi] if it[2] is not None]
    if node is not None and not any(it[1] == node.key for it in items[lo:hi]):
        leaves.append(node)  # the one leaf here stays: no item replaces it
    leaves.sort(key=_bits_of)
    return _build(leaves, depth)


def _bits_of(leaf: _Leaf) -> int:
    return leaf.bits


def _build(leaves: list[_Leaf], depth: int):
    """The subtree at `depth` over `leaves` (sorted by path, sharing their first `depth` bits)."""
    if len(leaves) <= 1:
        return leaves[0] if leaves else None
    shift = DEPTH - depth
    first_right = ((leaves[0].bits >> shift) << shift if depth else 0) | (1 << (shift - 1))
    mid = bisect_left(leaves, first_right, key=_bits_of)
    return _join(_build(leaves[:mid], depth + 1), _build(leaves[mid:], depth + 1))
