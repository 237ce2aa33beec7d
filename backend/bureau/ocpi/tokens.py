"""The tokens file: the OCPI tokens issued to roaming partners, kept only as their SHA-256, with
what the credentials exchange learned of each partner (docs/ocpi.md, "The tokens file").

A token is a *registration* token (OCPI's CREDENTIALS_TOKEN_A: it opens the versions and the
credentials endpoints, once) or a *credentials* token (CREDENTIALS_TOKEN_C: it opens every
endpoint). A credentials token made by the exchange also keeps the partner's versions URL and its
own token (CREDENTIALS_TOKEN_B, needed to call the partner), in clear: the file is 0600.

Every change is made under a lock (the node and `bureau ocpi issue-token` may change the file at
once) and written by rename of a fresh file, so a reader never sees half of it. The node reads
the file again whenever it changes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ..privatefile import exclusive_lock, write_private

log = logging.getLogger(__name__)
FORMAT = 2
HEADER = f"# bureau ocpi tokens v{FORMAT}"  # the first line of a file this module wrote
HEADER_RE = re.compile(r"# bureau ocpi tokens v(\d+)\Z")
REGISTRATION, CREDENTIALS = "registration", "credentials"
KINDS = (REGISTRATION, CREDENTIALS)
PARTY_RE = re.compile(r"[A-Za-z0-9*._-]{1,40}\Z")
DIGEST_RE = re.compile(r"[0-9a-f]{64}\Z")
# OCPI 2.2.1 credentials token: printable ASCII without whitespace, at most 64 characters
PARTNER_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,64}\Z")
URL_RE = re.compile(r"https?://[\x21-\x7e]{1,248}\Z")


class TokenFileError(ValueError):
    """A tokens file this version cannot read or write; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One line of the tokens file."""
    digest: str
    party: str  # the operator's name for the partner (issue-token --party)
    kind: str = CREDENTIALS
    versions_url: str | None = None  # the partner's, learned by the exchange
    partner_token: str | None = None  # the partner's token B, to call it

    @property
    def registered(self) -> bool:
        return self.kind == CREDENTIALS

    def line(self) -> str:
        fields = [self.digest, self.party, self.kind]
        if self.versions_url is not None:
            fields += [self.versions_url, self.partner_token]
        return " ".join(fields)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 43 characters: within OCPI's 64


def parse_line(line: str) -> Entry | None:
    """The entry of one line; None for a line that is not one (blank, a comment, or unreadable).
    `<digest> <party>` (the first format) is a credentials token without partner details."""
    parts = line.split()
    if len(parts) < 2 or not DIGEST_RE.match(parts[0]) or not PARTY_RE.match(parts[1]):
        return None
    if len(parts) == 2:
        return Entry(parts[0], parts[1])
    if len(parts) == 3 and parts[2] in KINDS:
        return Entry(parts[0], parts[1], parts[2])
    if len(parts) == 5 and parts[2] == CREDENTIALS and URL_RE.match(parts[3]) and PARTNER_TOKEN_RE.match(parts[4]):
        return Entry(parts[0], parts[1], CREDENTIALS, parts[3], parts[4])
    return None


def parse(text: str) -> list[Entry | str]:
    """The file's lines in order, each an Entry or, when it is none, the line as it is (kept when
    the file is written again: nothing an operator wrote is lost)."""
    lines = text.splitlines()
    if lines:
        m = HEADER_RE.match(lines[0].strip())
        if m and int(m.group(1)) != FORMAT:
            raise TokenFileError(f"the tokens file is format v{m.group(1)}; this bureau reads v{FORMAT} "
                                 "and the first format only")
    return [parse_line(line) or line for line in lines if not HEADER_RE.match(line.strip())]


def render(items: list[Entry | str]) -> str:
    return "".join(f"{item.line() if isinstance(item, Entry) else item}\n" for item in [HEADER, *items])


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
    """The tokens file of `path` (None: no OCPI; every token is unknown): looked up by a request's
    Authorization header, changed by `issue`, `exchange` and `revoke`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._entries, self._seen = {}, None
            return
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._seen == key:
            return
        try:
            items = parse(self.path.read_text())
        except TokenFileError as e:
            log.error("OCPI tokens file %s: %s; no OCPI token is accepted", self.path, e)
            items = []
        self._entries = {e.digest: e for e in items if isinstance(e, Entry)}
        self._seen = key

    def entry(self, header: str | None) -> tuple[str, Entry] | None:
        """(token, its entry) of the token the header carries; None for a missing or unknown one."""
        token = header_token(header)
        if self.path is None or token is None:
            return None
        self._load()
        want = digest(token)
        for known, entry in self._entries.items():
            if hmac.compare_digest(known, want):
                return token, entry
        return None

    def party(self, header: str | None) -> str | None:
        """The party of the header's credentials token; None for a missing, unknown or
        registration token (a registration token opens only the credentials exchange)."""
        found = self.entry(header)
        return found[1].party if found is not None and found[1].registered else None

    @contextmanager
    def _editing(self):
        """The file's items, to change in place; written back (by rename) when the block ends.
        Held under the file's lock so changes from the node and the command line never cross."""
        if self.path is None:
            raise TokenFileError("no tokens file is set (BUREAU_OCPI_TOKENS_FILE)")
        with self._lock, exclusive_lock(self.path.with_name(f".{self.path.name}.lock")):
            try:
                items = parse(self.path.read_text())
            except FileNotFoundError:
                items = []
            before = list(items)
            yield items
            if items != before:
                write_private(self.path, render(items))

    def issue(self, party: str, kind: str = CREDENTIALS) -> str:
        """A new token of `kind` for `party`; only its digest is written."""
        if not PARTY_RE.match(party):
            raise ValueError("a party is 1-40 of A-Z a-z 0-9 * . _ -")
        if kind not in KINDS:
            raise ValueError(f"a token is one of {', '.join(KINDS)}")
        token = new_token()
        with self._editing() as items:
            items.append(Entry(digest(token), party, kind))
        return token

    def exchange(self, token: str, kind: str, partner_token: str, versions_url: str) -> str | None:
        """Replace `token`, when it is still of `kind`, by a new credentials token that keeps the
        partner's token and versions URL; the new token, or None when `token` is no longer there
        (a registration token exchanged meanwhile, a token revoked)."""
        if not PARTNER_TOKEN_RE.match(partner_token) or not URL_RE.match(versions_url):
            raise ValueError("a partner token is 1-64 printable ASCII without whitespace; a versions URL http(s)")
        fresh = new_token()
        with self._editing() as items:
            i = self._find(items, token, kind)
            if i is None:
                return None
            items[i] = replace(items[i], digest=digest(fresh), kind=CREDENTIALS, versions_url=versions_url,
                               partner_token=partner_token)
        return fresh

    def revoke(self, token: str, kind: str) -> bool:
        """Remove `token` when it is of `kind`; whether it was there."""
        with self._editing() as items:
            i = self._find(items, token, kind)
            if i is not None:
                del items[i]
            return i is not None

    @staticmethod
    def _find(items: list[Entry | str], token: str, kind: str) -> int | None:
        want = digest(token)
        for i, item in enumerate(items):
            if isinstance(item, Entry) and hmac.compare_digest(item.digest, want) and item.kind == kind:
                return i
        return None


def issue(path: Path, party: str, kind: str = CREDENTIALS) -> str:
    """A new token of `kind` for `party` in the tokens file at `path` (made with mode 0600)."""
    return TokenBook(path).issue(party, kind)

