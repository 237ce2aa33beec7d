"""Canonical JSON: the one byte form of every JSON document that is signed or hashed."""

from __future__ import annotations

import json

MAX_DEPTH = 16  # deeper than any document of ours; Python's parser would recurse until it fails


# json.dumps with these options builds an encoder per call; the state map's records are encoded
# twice per receipt, so one encoder serves them all (it holds no state between calls).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def dumps(doc) -> bytes:
    return _ENCODER.encode(doc).encode()


def nesting_depth(raw: bytes, limit: int) -> int:
    """How deep arrays and objects nest in `raw`, counted up to `limit + 1` (then it stops)."""
    depth = deepest = 0
    in_string = escaped = False
    for b in raw:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


def loads_canonical(raw: bytes):
    """Parse JSON that must already be in canonical form (so its signature has one meaning)."""
    if nesting_depth(raw, MAX_DEPTH) > MAX_DEPTH:
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
    doc = json.loads(raw)
    if dumps(doc) != raw:
        raise ValueError("JSON is not in canonical form (sorted keys, no spaces, ASCII)")
    return doc
