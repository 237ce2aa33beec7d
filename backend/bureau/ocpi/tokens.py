"""OCPI credentials tokens, kept only as their SHA-256 (the tokens file: one `<hex digest>
<party>` line each). `issue` makes a token and appends its digest; the node reads the file again
whenever it changes, so a token issued while it runs counts at once."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

PARTY_RE = re.compile(r"[A-Za-z0-9*._-]{1,40}\Z")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(path: Path, party: str) -> str:
    """A new token for `party`; only its digest is written (the file made with mode 0600)."""
    if not PARTY_RE.match(party):
        raise ValueError("a party is 1-40 of A-Z a-z 0-9 * . _ -")
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{digest(token)} {party}\n")
    return token


def header_token(header: str | None) -> str | None:
    """The token of `Authorization: Token <base64 of the token>` (OCPI 2.2.1); the plain token
    is taken too (OCPI 2.1.1 clients send it so)."""
    if not header or not header.startswith("Token "):
        return None
    value = header[6:].strip()
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return value or None
    return decoded or None


class TokenBook:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen: tuple[float, int] | None = None
        self._parties: dict[str, str] = {}

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._parties = {}
            return
        if self._seen == (st.st_mtime, st.st_size):
            return
        parties = {}
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                parties[parts[0]] = parts[1]
        self._parties, self._seen = parties, (st.st_mtime, st.st_size)

    def party(self, header: str | None) -> str | None:
        """The party whose token the header carries; None for a missing or unknown token."""
        token = header_token(header)
        if self.path is None or token is None:
            return None
        self._load()
        want = digest(token)
        for known, party in self._parties.items():
            if hmac.compare_digest(known, want):
                return party
        return None
