"""The ledger state as a persistent binary sparse Merkle map (state root v2, docs/state.md).

Depth 256; a key's path is SHA-256 of its UTF-8 text, bit 0 = the most significant bit of byte 0
(0 = left). leaf = SHA-256(0x00 | path | SHA-256(value)), node = SHA-256(0x01 | left | right), an
empty subtree is 32 zero bytes, and a subtree holding exactly one leaf is that leaf's hash, so the
tree is canonical (one root per content) and a proof is about log2(n) hashes.

Nodes are never changed: `update` copies the paths it touches and returns a new map, so an old
map stays valid (the ledger builds the next map without changing the current one, and readers
take a snapshot without a lock).

A subtree is None (empty), a leaf `(hash, path as int, key, value)` or a node `(hash, left,
right)` holding two leaves or more. Plain tuples of bytes, ints, text and such tuples: the cyclic
garbage collector untracks them at its first pass, so a map of many records adds nothing to the
collections the rest of the process pays for (slotted objects would stay tracked and be traversed
by every full collection).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from collections.abc import Mapping
from operator import itemgetter

EMPTY = b"\x00" * 32
PROOF_VERSION = 1
DEPTH = 256

_sha256 = hashlib.sha256
_NODE = b"\x01"
_NODE_EMPTY_LEFT = b"\x01" + EMPTY  # a node's prefix when its left half is empty
_EMPTY_HEX = EMPTY.hex()
_leaf_bits = itemgetter(1)


def key_path(key: str) -> bytes:
    return _sha256(key.encode()).digest()


def value_hash(value: str) -> bytes:
    return _sha256(value.encode()).digest()


def leaf_hash(path: bytes, vhash: bytes) -> bytes:
    return _sha256(b"\x00" + path + vhash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _leaf(key: str, value: str) -> tuple:
    path = _sha256(key.encode()).digest()
    return (_sha256(b"\x00" + path + _sha256(value.encode()).digest()).digest(),
            int.from_bytes(path, "big"), key, value)


def _entry(key: str, value: str | None) -> tuple:
    """(path as int, key, new leaf or None for a deletion)."""
    if value is None:
        return (int.from_bytes(key_path(key), "big"), key, None)
    leaf = _leaf(key, value)
    return (leaf[1], key, leaf)


def _join(left, right):
    """The subtree over two halves, compressed when it holds one leaf or none."""
    if left is None:
        if right is None or len(right) == 4:
            return right
        return (_sha256(_NODE_EMPTY_LEFT + right[0]).digest(), None, right)
    if right is None:
        if len(left) == 4:
            return left
        return (_sha256(_NODE + left[0] + EMPTY).digest(), left, None)
    return (_sha256(_NODE + left[0] + right[0]).digest(), left, right)


def _wrap(node: tuple, bits: int, depth: int, top: int) -> tuple:
    """`node` at `depth` under the one-sided nodes up to depth `top`, along path `bits` (the other
    half of each is empty)."""
    for d in range(depth - 1, top - 1, -1):
        if (bits >> (255 - d)) & 1:
            node = (_sha256(_NODE_EMPTY_LEFT + node[0]).digest(), None, node)
        else:
            node = (_sha256(_NODE + node[0] + EMPTY).digest(), node, None)
    return node


class StateMap:
    """An immutable map of key text to value text with a Merkle root."""
    __slots__ = ("_top",)

    def __init__(self, _top=None) -> None:
        self._top = _top

    @property
    def root(self) -> bytes:
        return self._top[0] if self._top is not None else EMPTY

    def get(self, key: str) -> str | None:
        bits, node, shift = int.from_bytes(key_path(key), "big"), self._top, 255
        while node is not None and len(node) == 3:
            node = node[2] if (bits >> shift) & 1 else node[1]
            shift -= 1
        return node[3] if node is not None and node[2] == key else None

    def items(self):
        """Every (key, value) record, in path order (a snapshot's records)."""
        stack = [self._top] if self._top is not None else []
        while stack:
            node = stack.pop()
            if len(node) == 4:
                yield node[2], node[3]
            else:
                stack.extend(n for n in (node[2], node[1]) if n is not None)

    def update(self, changes: Mapping[str, str | None]) -> StateMap:
        """A new map with each key of `changes` set to its value, or deleted where it is None.
        Each touched node is hashed once for the whole batch."""
        if not changes:
            return self
        # (path as int, key, new leaf or None), sorted by path: a subtree's entries are one slice
        entries = sorted(_entry(k, v) for k, v in changes.items())
        paths = [e[0] for e in entries]
        return StateMap(_update(self._top, 0, paths, entries, 0, len(entries)))

    def prove(self, key: str) -> dict:
        """The proof JSON v1 of `key`'s value, or of its absence (docs/state.md)."""
        bits, node, shift, siblings = int.from_bytes(key_path(key), "big"), self._top, 255, []
        while node is not None and len(node) == 3:
            if (bits >> shift) & 1:
                sibling, node = node[1], node[2]
            else:
                sibling, node = node[2], node[1]
            siblings.append(sibling[0].hex() if sibling is not None else _EMPTY_HEX)
            shift -= 1
        value = other = None
        if node is not None:
            if node[2] == key:
                value = node[3]
            else:
                other = {"path": node[1].to_bytes(32, "big").hex(), "value_hash": value_hash(node[3]).hex()}
        return {"v": PROOF_VERSION, "key": key, "value": value, "siblings": siblings, "other": other}


def _update(node, depth: int, paths: list[int], entries: list[tuple], lo: int, hi: int):
    """`node` (the subtree at `depth`) with entries[lo:hi] applied; `paths` are their paths."""
    if hi - lo == 1:
        bits, key, new = entries[lo]
        return _update_one(node, depth, bits, key, new)
    if node is not None and len(node) == 3:
        shift = 255 - depth
        mid = bisect_left(paths, ((paths[lo] >> shift) | 1) << shift, lo, hi)
        left = _update(node[1], depth + 1, paths, entries, lo, mid) if mid > lo else node[1]
        right = _update(node[2], depth + 1, paths, entries, mid, hi) if hi > mid else node[2]
        if left is node[1] and right is node[2]:
            return node  # only deletions of absent keys below
        return _join(left, right)
    leaves = [e[2] for e in entries[lo:hi] if e[2] is not None]
    if node is not None and not any(e[1] == node[2] for e in entries[lo:hi]):
        insort(leaves, node, key=_leaf_bits)  # the one leaf here stays: no entry replaces it
    return _build(leaves, depth)


def _update_one(top, depth: int, bits: int, key: str, new):
    """`top` (the subtree at `depth`) with `key` (path `bits`) set to leaf `new`, or deleted if None:
    down the path, then the nodes on it rebuilt bottom up."""
    node, trail, shift = top, [], 255 - depth
    while node is not None and len(node) == 3:
        trail.append(node)
        node = node[2] if (bits >> shift) & 1 else node[1]
        shift -= 1
    depth = 255 - shift
    if new is None and (node is None or node[2] != key):
        return top  # deleting an absent key
    if node is None or node[2] == key:
        sub = new
    else:  # the new leaf and the one here part at the first bit their paths differ
        other = node[1]
        split = 256 - (bits ^ other).bit_length()
        pair = (_sha256(_NODE + new[0] + node[0]).digest(), new, node) if bits < other else \
            (_sha256(_NODE + node[0] + new[0]).digest(), node, new)
        sub = _wrap(pair, bits, split, depth)
    for parent in reversed(trail):
        shift += 1
        if sub is not None and len(sub) == 3:  # a node stays one: no compression above it
            if (bits >> shift) & 1:
                sibling = parent[1]
                sub = (_sha256(b"".join((_NODE, sibling[0] if sibling is not None else EMPTY, sub[0]))).digest(),
                       sibling, sub)
            else:
                sibling = parent[2]
                sub = (_sha256(b"".join((_NODE, sub[0], sibling[0] if sibling is not None else EMPTY))).digest(),
                       sub, sibling)
        elif (bits >> shift) & 1:
            sub = _join(parent[1], sub)
        else:
            sub = _join(sub, parent[2])
    return sub


def _build(leaves: list[tuple], depth: int):
    """The subtree at `depth` over `leaves` (sorted by path, sharing their first `depth` bits)."""
    if len(leaves) <= 1:
        return leaves[0] if leaves else None
    return _build_range(leaves, [leaf[1] for leaf in leaves], depth, 0, len(leaves))


def _build_range(leaves: list[tuple], paths: list[int], depth: int, lo: int, hi: int) -> tuple:
    if hi - lo == 1:
        return leaves[lo]
    first = paths[lo]
    # the first and the last path of the range part at the depth where it splits in two halves
    split = 256 - (first ^ paths[hi - 1]).bit_length()
    shift = 255 - split
    mid = bisect_left(paths, ((first >> shift) | 1) << shift, lo, hi)
    left = _build_range(leaves, paths, split + 1, lo, mid)
    right = _build_range(leaves, paths, split + 1, mid, hi)
    return _wrap((_sha256(_NODE + left[0] + right[0]).digest(), left, right), first, split, depth)
