"""Byte formats the bureau signs for chargers (docs/authorization.md), backend side.

* the offline authorization list: a signed manifest plus unsigned pages bound to it by
  SHA-256, so that each MQTT message stays within the charger's packet limit (1664 bytes);
* the tariff push: the current tariff document, signed;
* the online authorization reply and the reply to a release (JSON on the charger's reply topic)
  and the bytes their signatures cover, bound to the charger and to the request they answer.

Integers are unsigned big-endian; `str` is a 1-byte length and that many printable ASCII bytes,
as in the receipt (docs/receipt-v1.md). Every structure has exactly one encoding: fields in a
fixed order, no optional fields, nothing after the last one. The signature is Ed25519 (PyNaCl)
over a 16-byte domain tag followed by the body, by a bureau validator key named in the genesis.

The firmware's `authz.py` decodes and verifies the same bytes under MicroPython;
tests/vectors/authz.json holds the two together.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from ..errors import ReasonedError, printable_detail
from .. import crypto
from ..ledger import canonical

FORMAT = 1
TARIFF_FORMAT = 2  # format 1 had no effective_from; chargers still read it (as in force at once)
SIG_LEN = 64
MAX_MESSAGE = 1536  # the charger's MQTT client takes packets of up to 1664 bytes, topic included
MAX_PAGES = 60
MAX_LIMIT_FEN = 2**32 - 1
LIST_TAG = b"EV-AUTHLIST/v1".ljust(16, b"\x00")
TARIFF_TAG = b"EV-TARIFF/v1".ljust(16, b"\x00")
AUTH_REPLY_TAG = b"EV-AUTHREPLY/v2".ljust(16, b"\x00")
AUTH_REPLY_VERSION = 2
RELEASE_TAG = b"EV-RELEASE/v2".ljust(16, b"\x00")
RELEASE_REPLY_VERSION = 2
_ID = re.compile(r"[A-Za-z0-9._-]{1,32}\Z")
_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")
_U64 = 2**64 - 1


class WireError(ReasonedError):
    """Refused: see `reason`."""


@dataclass(frozen=True, slots=True)
class Entry:
    uid: str  # card UID, upper-case hex as the reader gives it
    wallet_id: str
    limit_fen: int  # what the charger may authorize offline for this card


@dataclass(frozen=True, slots=True)
class Manifest:
    chain_id: str
    signer: str  # validator id (genesis) whose key signs
    list_version: int  # chain height whose committed balances the limits come from
    issued_at: int  # Unix s
    expires_at: int  # Unix s; the list is not used from this moment on
    entries: int  # total entries over all pages
    pages: tuple[tuple[str, bytes], ...]  # (first uid of the page, SHA-256 of the page bytes)


@dataclass(frozen=True, slots=True)
class TariffPush:
    chain_id: str
    signer: str
    issued_at: int
    doc: dict  # tariff document v1 (docs/tariff.md)
    effective_from: int = 0  # Unix s: sessions the charger starts from then on are billed by it


# ---- primitives ------------------------------------------------------------------------------

def _put_str(out: bytearray, s: str, what: str, lo: int = 0, hi: int = 255) -> None:
    if not _PRINTABLE.match(s) or not lo <= len(s) <= hi:
        raise WireError("malformed", f"{what} must be {lo}-{hi} printable ASCII characters")
    out.append(len(s))
    out += s.encode("ascii")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.i = data, 0

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.data):
            raise WireError("malformed", "message ends early")
        b = self.data[self.i:self.i + n]
        self.i += n
        return b

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def str(self) -> str:
        raw = self.take(self.u8())
        try:
            s = raw.decode("ascii")
        except UnicodeDecodeError:
            raise WireError("malformed", "text is not ASCII") from None
        if not _PRINTABLE.match(s):
            raise WireError("malformed", "text is not printable ASCII")
        return s

    def end(self) -> None:
        if self.i != len(self.data):
            raise WireError("malformed", f"{len(self.data) - self.i} bytes after the last field")


def _split(envelope: bytes, formats: tuple[int, ...] = (FORMAT,)) -> tuple[bytes, bytes]:
    if len(envelope) > MAX_MESSAGE:
        raise WireError("oversized", f"{len(envelope)} bytes, limit {MAX_MESSAGE}")
    if len(envelope) < 1 + SIG_LEN:
        raise WireError("malformed", "too short")
    body = envelope[:-SIG_LEN]
    if body[0] not in formats:
        raise WireError("unsupported_version", f"format {body[0]}")
    return body, envelope[-SIG_LEN:]


# ---- list pages ------------------------------------------------------------------------------

def encode_page(entries: list[Entry]) -> bytes:
    if not entries or len(entries) > 0xFFFF:
        raise WireError("malformed", "a page holds 1-65535 entries")
    out = bytearray([FORMAT])
    out += struct.pack(">H", len(entries))
    last = None
    for e in entries:
        if not _ID.match(e.uid) or not _ID.match(e.wallet_id):
            raise WireError("malformed", f"entry {e.uid!r} -> {e.wallet_id!r} is not a valid card uid / wallet id")
        if not 0 < e.limit_fen <= MAX_LIMIT_FEN:
            raise WireError("malformed", f"limit of {e.uid} out of range")
        if last is not None and e.uid <= last:
            raise WireError("malformed", "entries must ascend strictly by uid")
        last = e.uid
        _put_str(out, e.uid, "uid", 1, 32)
        _put_str(out, e.wallet_id, "wallet id", 1, 32)
        out += struct.pack(">I", e.limit_fen)
    return bytes(out)


def decode_page(page: bytes) -> list[Entry]:
    if len(page) > MAX_MESSAGE:
        raise WireError("oversized", f"page of {len(page)} bytes")
    r = _Reader(page)
    if r.u8() != FORMAT:
        raise WireError("unsupported_version", "page format")
    n = r.u16()
    out: list[Entry] = []
    for _ in range(n):
        uid, wallet, limit = r.str(), r.str(), r.u32()
        if out and uid <= out[-1].uid:
            raise WireError("malformed", "page entries do not ascend")
        out.append(Entry(uid, wallet, limit))
    r.end()
    if not out:
        raise WireError("malformed", "empty page")
    return out


def page_hash(page: bytes) -> bytes:
    return hashlib.sha256(page).digest()


def _entry_size(e: Entry) -> int:
    return 2 + len(e.uid) + len(e.wallet_id) + 4


def paginate(entries: list[Entry], max_bytes: int = MAX_MESSAGE) -> list[tuple[bytes, str, int]]:
    """Entries (ascending by uid) cut into pages of at most `max_bytes`, in order:
    (page bytes, first uid, entry count) each."""
    pages: list[tuple[bytes, str, int]] = []
    cur: list[Entry] = []
    size = 3
    for e in entries:
        n = _entry_size(e)
        if cur and size + n > max_bytes:
            pages.append((encode_page(cur), cur[0].uid, len(cur)))
            cur, size = [], 3
        cur.append(e)
        size += n
    if cur:
        pages.append((encode_page(cur), cur[0].uid, len(cur)))
    return pages


# ---- the signed manifest ---------------------------------------------------------------------

def manifest_body(m: Manifest) -> bytes:
    if not 0 <= m.issued_at < m.expires_at <= _U64 or not 0 <= m.list_version <= _U64:
        raise WireError("malformed", "times or version out of range (issued_at < expires_at)")
    if len(m.pages) > MAX_PAGES:
        raise WireError("malformed", f"at most {MAX_PAGES} pages")
    out = bytearray([FORMAT])
    _put_str(out, m.chain_id, "chain id", 1, 64)
    _put_str(out, m.signer, "signer", 1, 32)
    out += struct.pack(">QQQI", m.list_version, m.issued_at, m.expires_at, m.entries)
    out.append(len(m.pages))
    last = None
    for first_uid, digest in m.pages:
        if len(digest) != 32:
            raise WireError("malformed", "page hash must be 32 bytes")
        if last is not None and first_uid <= last:
            raise WireError("malformed", "pages must ascend by first uid")
        last = first_uid
        _put_str(out, first_uid, "first uid", 1, 32)
        out += digest
    return bytes(out)


def _seal(body: bytes, tag: bytes, signing_key, what: str) -> bytes:
    """body | Ed25519 signature over tag | body, within the charger's message limit."""
    env = body + signing_key.sign(tag + body).signature
    if len(env) > MAX_MESSAGE:
        raise WireError("oversized", f"{what} of {len(env)} bytes")
    return env


def sign_manifest(m: Manifest, signing_key) -> bytes:
    return _seal(manifest_body(m), LIST_TAG, signing_key, "manifest")


def decode_manifest(envelope: bytes) -> tuple[Manifest, bytes, bytes]:
    body, sig = _split(envelope)
    r = _Reader(body)
    r.u8()
    chain_id, signer = r.str(), r.str()
    version, issued, expires, entries = r.u64(), r.u64(), r.u64(), r.u32()
    pages = []
    for _ in range(r.u8()):
        first = r.str()
        pages.append((first, r.take(32)))
    r.end()
    return Manifest(chain_id, signer, version, issued, expires, entries, tuple(pages)), body, sig


def verify_manifest(envelope: bytes, keys: dict[str, bytes], chain_id: str) -> Manifest:
    m, body, sig = decode_manifest(envelope)
    _check_signer(m.chain_id, m.signer, keys, chain_id, LIST_TAG + body, sig)
    return m


def _check_signer(doc_chain: str, signer: str, keys: dict[str, bytes], chain_id: str, msg: bytes, sig: bytes) -> None:
    if doc_chain != chain_id:
        raise WireError("wrong_chain", f"signed for chain {doc_chain}, not {chain_id}")
    key = keys.get(signer)
    if key is None:
        raise WireError("unknown_signer", f"{signer} is not a bureau validator")
    if not crypto.verify(key, msg, sig):
        raise WireError("bad_signature", f"signature does not verify with the key of {signer}")


# ---- the tariff push -------------------------------------------------------------------------

def tariff_body(t: TariffPush) -> bytes:
    doc = canonical.dumps(t.doc)
    if not 0 <= t.issued_at <= _U64 or not 0 <= t.effective_from <= _U64 or len(doc) > 0xFFFF:
        raise WireError("malformed", "issued_at, effective_from or document size out of range")
    out = bytearray([TARIFF_FORMAT])
    _put_str(out, t.chain_id, "chain id", 1, 64)
    _put_str(out, t.signer, "signer", 1, 32)
    out += struct.pack(">QQH", t.issued_at, t.effective_from, len(doc))
    out += doc
    return bytes(out)


def sign_tariff(t: TariffPush, signing_key) -> bytes:
    return _seal(tariff_body(t), TARIFF_TAG, signing_key, "tariff push")


def decode_tariff(envelope: bytes) -> tuple[TariffPush, bytes, bytes]:
    body, sig = _split(envelope, (FORMAT, TARIFF_FORMAT))
    r = _Reader(body)
    fmt = r.u8()
    chain_id, signer = r.str(), r.str()
    issued = r.u64()
    effective_from = r.u64() if fmt == TARIFF_FORMAT else 0
    raw = r.take(r.u16())
    r.end()
    try:
        doc = canonical.loads_canonical(raw)
    except ValueError as e:
        raise WireError("malformed", f"tariff document: {e}") from None
    return TariffPush(chain_id, signer, issued, doc, effective_from), body, sig


def verify_tariff(envelope: bytes, keys: dict[str, bytes], chain_id: str) -> TariffPush:
    t, body, sig = decode_tariff(envelope)
    _check_signer(t.chain_id, t.signer, keys, chain_id, TARIFF_TAG + body, sig)
    return t


# ---- the online authorization reply ----------------------------------------------------------

def _put_req(out: bytearray, req) -> None:
    """The request a reply answers: u8 0 (null) | u8 1, u64 (integer) | u8 2, str (text)."""
    if req is None:
        out.append(0)
    elif isinstance(req, int) and not isinstance(req, bool) and 0 <= req <= _U64:
        out.append(1)
        out += struct.pack(">Q", req)
    elif isinstance(req, str):
        out.append(2)
        _put_str(out, req, "req", 1, 64)
    else:
        raise WireError("malformed", "req must be null, an integer or text")


def _signer_key(reply: dict, version: int, what: str, keys: dict[str, bytes]) -> tuple[str, bytes, bytes]:
    """(bureau, its key, signature) of a signed reply; raises WireError."""
    if reply.get("v") != version:
        raise WireError("unsigned", f"{what} version {reply.get('v')!r}; signed ones are v {version}")
    bureau = reply.get("bureau")
    try:
        sig = bytes.fromhex(reply["sig"])
    except (KeyError, TypeError, ValueError):
        raise WireError("malformed", "sig must be hex") from None
    if not isinstance(bureau, str):
        raise WireError("malformed", "bureau must name a validator")
    key = keys.get(bureau)
    if key is None:
        raise WireError("unknown_signer", f"{bureau} is not a bureau validator")
    return bureau, key, sig


def auth_reply_bytes(chain_id: str, bureau: str, charger_id: str, reply: dict) -> bytes:
    """What the bureau signs for an authorization reply (docs/authorization.md):
    AUTH_REPLY_TAG | chain_id str | bureau str | charger_id str | req | decision u8 |
    method str | token str | wallet_id str | authorized_fen u64 | auth_ref str | expires u64 |
    reason str | detail str; `req` is u8 0 (null), u8 1 and u64 (integer) or u8 2 and str (text);
    a null or absent field is the empty str, or 0."""
    out = bytearray(AUTH_REPLY_TAG)
    _put_str(out, chain_id, "chain id", 1, 64)
    _put_str(out, bureau, "bureau", 1, 32)
    _put_str(out, charger_id, "charger id", 1, 32)
    _put_req(out, reply.get("req"))
    decision = reply.get("decision")
    if decision not in ("accept", "reject"):
        raise WireError("malformed", "decision must be accept or reject")
    out.append(1 if decision == "accept" else 0)
    for name in ("method", "token", "wallet_id"):
        _put_str(out, reply.get(name) or "", name)
    fen, expires = reply.get("authorized_fen") or 0, reply.get("expires") or 0
    if not (0 <= fen <= _U64 and 0 <= expires <= _U64):
        raise WireError("malformed", "authorized_fen or expires out of range")
    out += struct.pack(">Q", fen)
    _put_str(out, reply.get("auth_ref") or "", "auth_ref")
    out += struct.pack(">Q", expires)
    _put_str(out, reply.get("reason") or "", "reason")
    _put_str(out, reply.get("detail") or "", "detail")
    return bytes(out)


def sign_auth_reply(reply: dict, chain_id: str, bureau: str, charger_id: str, signing_key) -> dict:
    """The reply as sent: version 2, the deciding bureau's id and its signature (hex)."""
    out = {**reply, "v": AUTH_REPLY_VERSION, "bureau": bureau}
    if out.get("detail") is not None:
        out["detail"] = printable_detail(out["detail"])
    out["sig"] = signing_key.sign(auth_reply_bytes(chain_id, bureau, charger_id, out)).signature.hex()
    return out


def verify_auth_reply(reply: dict, keys: dict[str, bytes], chain_id: str, charger_id: str) -> dict:
    """`reply` when a validator in `keys` signed it for this chain and charger; raises WireError."""
    bureau, key, sig = _signer_key(reply, AUTH_REPLY_VERSION, "reply", keys)
    if not crypto.verify(key, auth_reply_bytes(chain_id, bureau, charger_id, reply), sig):
        raise WireError("bad_signature", f"signature does not verify with the key of {bureau}")
    return reply


# ---- the release reply -----------------------------------------------------------------------

def release_reply_bytes(chain_id: str, bureau: str, charger_id: str, reply: dict) -> bytes:
    """What the bureau signs for the reply to a release request (docs/authorization.md):
    RELEASE_TAG | chain_id str | bureau str | charger_id str | req (as in the auth reply) |
    auth_ref str | released u8 (1 released, 0 not) | reason str; null is the empty str."""
    out = bytearray(RELEASE_TAG)
    _put_str(out, chain_id, "chain id", 1, 64)
    _put_str(out, bureau, "bureau", 1, 32)
    _put_str(out, charger_id, "charger id", 1, 32)
    _put_req(out, reply.get("req"))
    ref, released = reply.get("auth_ref"), reply.get("released")
    if not (ref is None or isinstance(ref, str)) or not isinstance(released, bool):
        raise WireError("malformed", "auth_ref must be text or null, released true or false")
    _put_str(out, ref or "", "auth_ref")
    out.append(1 if released else 0)
    _put_str(out, reply.get("reason") or "", "reason")
    return bytes(out)


def sign_release_reply(reply: dict, chain_id: str, bureau: str, charger_id: str, signing_key) -> dict:
    """The release reply as sent: version 2, the bureau's id and its signature (hex)."""
    out = {**reply, "v": RELEASE_REPLY_VERSION, "bureau": bureau}
    out["sig"] = signing_key.sign(release_reply_bytes(chain_id, bureau, charger_id, out)).signature.hex()
    return out


def verify_release_reply(reply: dict, keys: dict[str, bytes], chain_id: str, charger_id: str) -> dict:
    """`reply` when a validator in `keys` signed it for this chain and charger; raises WireError."""
    bureau, key, sig = _signer_key(reply, RELEASE_REPLY_VERSION, "release reply", keys)
    if not crypto.verify(key, release_reply_bytes(chain_id, bureau, charger_id, reply), sig):
        raise WireError("bad_signature", f"signature does not verify with the key of {bureau}")
    return reply
