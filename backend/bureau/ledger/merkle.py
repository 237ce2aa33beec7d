"""RFC 6962 / RFC 9162 Merkle tree: root, audit paths, and inclusion verification.

Leaf hash SHA-256(0x00 || d), node hash SHA-256(0x01 || l || r); a tree of n leaves splits at
the largest power of two below n. The block's tx_root is this tree over its transactions, and
a driver's phone checks a receipt's audit path with the same algorithm (RFC 9162 §2.1.3.2).
"""

from __future__ import annotations

from hashlib import sha256


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: list[bytes]) -> bytes:
    """Iterative MTH over leaf hashes: pair up left to right, carry an odd last node up.

    Carrying the odd node unchanged gives exactly the RFC's split at the largest power of two.
    """
    if not hashes:
        return sha256(b"").digest()
    level = list(hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(leaves: list[bytes]) -> bytes:
    return root_from_leaf_hashes([leaf_hash(d) for d in leaves])


def audit_path(hashes: list[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1 for leaf `index` of a tree given by its leaf hashes."""
    if not 0 <= index < len(hashes):
        raise IndexError(f"leaf {index} outside a tree of {len(hashes)}")
    path: list[bytes] = []
    lo, hi = 0, len(hashes)
    # Walk down from the root; siblings come out root-first, the RFC lists them leaf-first.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            path.append(root_from_leaf_hashes(hashes[lo + k:hi]))
            hi = lo + k
        else:
            path.append(root_from_leaf_hashes(hashes[lo:lo + k]))
            lo = lo + k
    path.reverse()
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], expected_root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `leaf` (a leaf hash) sit at `index` of a tree of `size`?"""
    if index >= size or index < 0:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root
