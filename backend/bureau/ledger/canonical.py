"""Canonical JSON: the one byte form of every JSON document that is signed or hashed."""

from __future__ import annotations

import json


def dumps(doc) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def loads_canonical(raw: bytes):
    """Parse JSON that must already be in canonical form (so its signature has one meaning)."""
    doc = json.loads(raw)
    if dumps(doc) != raw:
        raise ValueError("JSON is not in canonical form (sorted keys, no spaces, ASCII)")
    return doc
