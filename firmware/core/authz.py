# Driver authorization on the charger (docs/authorization.md): online requests to the bureau and
# their replies, phone starts, the offline authorization list signed by the bureau, and the
# signed tariff push. Pure logic, MicroPython and CPython alike: flash, time, randomness and the
# Ed25519 check (ed25519.verify) are handed in; MQTT messages come in as payloads and go out as
# ("publish", topic, payload) actions, decisions as ("decision", dict).
#
# Trust: at provisioning the technician writes bureau.json from the chain's genesis (the chain id
# and the validators' public keys, see `trust.provision`). A list, tariff or online reply counts
# only if one of those keys signed it for that chain (and a reply, for the request it answers).
#
# Offline list on flash (content-addressed, so a power cut never leaves a half list in use):
#   authz/list        the installed manifest (signed envelope)
#   authz/next        a verified manifest whose pages have not all arrived yet
#   authz/pg/<hash>   pages, named by the first 20 hex digits of their SHA-256
#   authz/used        offline receipts acked at a height the installed list does not cover yet
# A manifest is installed by one atomic write of authz/list once every page it names is here.
import binascii
import hashlib
import json
import struct

import receipt
import signed_reply
import topics
import trust as trust_mod
from errors import CodecError
from tariff import Tariff, TariffError
from ticks import ticks_diff
from topics import LIST_TOPICS, MANIFEST_TOPIC, PAGE_TOPIC_PREFIX, TARIFF_TOPIC
from trust import TRUST_FILE, provision, trust_from_genesis  # noqa: F401  (provisioning goes through authz)

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

FORMAT = const(1)
TARIFF_FORMAT = const(2)  # the tariff push with effective_from; format 1 (without) is still read
SIG_LEN = const(64)
MAX_MESSAGE = const(1536)
ONLINE_TIMEOUT_MS = const(5000)  # no reply by then: a card falls back to the offline list
_MAX_ORPHANS = const(64)  # pages kept that no manifest names (yet)
_MAX_USED = const(256)
_MAX_RELEASING = const(8)  # release requests awaiting their reply

LIST_TAG = b"EV-AUTHLIST/v1\x00\x00"
TARIFF_TAG = b"EV-TARIFF/v1\x00\x00\x00\x00"

_DIR = "authz"
_PAGES = "authz/pg"
LIST_FILE = "authz/list"
NEXT_FILE = "authz/next"
USED_FILE = "authz/used"
TARIFF_SEEN_FILE = "authz/tariff"

METHOD_CARD = const(1)  # receipt auth_method: card, online
METHOD_OFFLINE = const(2)  # card, offline list
METHOD_APP = const(3)  # phone start, online
_WIRE_METHOD = {"card": 1, "app": 3}
# online rejections that say nothing about the card: the offline list may still decide
_TRANSIENT = ("busy", "internal_error", "timeout")


class AuthzError(CodecError):
    """A signed bureau message or local authorization that must not be used."""


def _hex(b):
    return binascii.hexlify(b).decode()


def _sha256(b):
    return hashlib.sha256(b).digest()


# ---- byte formats (the backend's authz/wire.py writes them; tests/vectors/authz.json) -----------

class _Reader:
    def __init__(self, data):
        self.d = data
        self.i = 0

    def take(self, n):
        i = self.i
        if i + n > len(self.d):
            raise AuthzError("malformed", "message ends early")
        self.i = i + n
        return self.d[i:i + n]

    def u8(self):
        return self.take(1)[0]

    def num(self, fmt, n):
        return struct.unpack(fmt, self.take(n))[0]

    def text(self):
        raw = bytes(self.take(self.u8()))
        for c in raw:
            if c < 0x20 or c > 0x7E:
                raise AuthzError("malformed", "text is not printable ASCII")
        return raw.decode()

    def end(self):
        if self.i != len(self.d):
            raise AuthzError("malformed", "bytes after the last field")


def _split(env, newest=FORMAT):
    if len(env) > MAX_MESSAGE:
        raise AuthzError("oversized", "%d bytes" % len(env))
    if len(env) < SIG_LEN + 1:
        raise AuthzError("malformed", "too short")
    body = memoryview(env)[:-SIG_LEN]  # no copy: the signed message (tag + body) is the one made
    if not FORMAT <= body[0] <= newest:
        raise AuthzError("unsupported_version", "format %d" % body[0])
    return body, bytes(env[-SIG_LEN:])


def decode_manifest(env):
    """(manifest dict, body, signature) of a list manifest; checks the encoding only."""
    body, sig = _split(env)
    r = _Reader(body)
    r.u8()
    m = {"chain_id": r.text(), "signer": r.text(), "list_version": r.num(">Q", 8),
         "issued_at": r.num(">Q", 8), "expires_at": r.num(">Q", 8), "entries": r.num(">I", 4)}
    pages = []
    for _ in range(r.u8()):
        first = r.text()
        pages.append((first, bytes(r.take(32))))
    r.end()
    m["pages"] = pages
    return m, body, sig


def decode_page(page):
    """[(uid, wallet_id, limit_fen), ...] of a list page, ascending by uid."""
    if len(page) > MAX_MESSAGE:
        raise AuthzError("oversized", "page of %d bytes" % len(page))
    r = _Reader(page)
    if r.u8() != FORMAT:
        raise AuthzError("unsupported_version", "page format")
    out = []
    for _ in range(r.num(">H", 2)):
        uid = r.text()
        wallet = r.text()
        limit = r.num(">I", 4)
        if out and uid <= out[-1][0]:
            raise AuthzError("malformed", "page entries do not ascend")
        out.append((uid, wallet, limit))
    r.end()
    if not out:
        raise AuthzError("malformed", "empty page")
    return out


def find_in_page(page, uid):
    """(wallet_id, limit_fen) of `uid` in a page, or None; reads the bytes in place."""
    key = uid.encode()
    n = struct.unpack(">H", page[1:3])[0]
    i = 3
    for _ in range(n):
        ln = page[i]
        cur = page[i + 1:i + 1 + ln]
        i += 1 + ln
        wl = page[i]
        if cur == key:
            return bytes(page[i + 1:i + 1 + wl]).decode(), struct.unpack(">I", page[i + 1 + wl:i + 5 + wl])[0]
        if cur > key:
            return None
        i += 5 + wl
    return None


def decode_tariff_push(env):
    """(push dict with the tariff's JSON bytes under "doc", body, signature)."""
    body, sig = _split(env, TARIFF_FORMAT)
    r = _Reader(body)
    fmt = r.u8()
    t = {"chain_id": r.text(), "signer": r.text(), "issued_at": r.num(">Q", 8)}
    t["effective_from"] = r.num(">Q", 8) if fmt == TARIFF_FORMAT else 0
    t["doc"] = bytes(r.take(r.num(">H", 2)))
    r.end()
    return t, body, sig


def _page_name(digest):
    return _PAGES + "/" + _hex(digest)[:20]


# ---- the authorizer ----------------------------------------------------------------------------

class Authz:
    def __init__(self, charger_id, flash, verify, urandom, timeout_ms=ONLINE_TIMEOUT_MS):
        self.charger_id = charger_id
        self.flash = flash
        self.verify = verify  # ed25519.verify(public_key, msg, sig) -> bool
        self.urandom = urandom
        self.timeout_ms = timeout_ms
        self.auth_topic = topics.auth(charger_id)
        self.reply_topic = topics.reply(charger_id)
        self.trust = trust_mod.Trust()  # the bureau keys of bureau.json
        self.refused_replies = {}  # reason -> authorization replies ignored for it (shown in the status)
        self.manifest = None  # installed list (dict of decode_manifest)
        self.next = None  # staged list, waiting for pages
        self.used = {}  # str(seq) -> [uid, fen, commit height] of acked offline receipts
        self.pending = {}  # req -> [method, token, sent at (ms counter)]
        self.releasing = []  # (req, auth_ref) of release requests without a signed reply yet
        flash.mkdir(_DIR)
        flash.mkdir(_PAGES)

    def load(self):
        self.trust = trust_mod.load(self.flash)
        raw = self.flash.read(LIST_FILE)
        self.manifest = decode_manifest(raw)[0] if raw else None
        raw = self.flash.read(NEXT_FILE)
        self.next = decode_manifest(raw)[0] if raw else None
        if self.next is not None and not self._newer(self.next, self.manifest):
            self.flash.remove(NEXT_FILE)  # a cut after installing it, before removing it
            self.next = None
        raw = self.flash.read(USED_FILE)
        self.used = json.loads(raw) if raw else {}
        if self.next is None or self._try_install() is None:
            # pages no list names: left by a cut before they were collected, or sent ahead of a
            # manifest (the retained copies come again after the reconnect)
            self._collect(None, 0)

    def subscriptions(self):
        return [(LIST_TOPICS, 1), (TARIFF_TOPIC, 1)]

    @property
    def provisioned(self):
        return self.trust.provisioned

    # ---- online ------------------------------------------------------------------------

    def request(self, method, token, now_s, now_ms):
        """An online authorization request: ("publish", topic, payload). `method` is "card" or
        "app"; the reply arrives on the reply topic (see `on_reply`)."""
        req = _hex(self.urandom(8))  # unique across reboots: the bureau answers a repeat alike
        self.pending[req] = [method, token, now_ms]
        msg = {"v": 1, "req": req, "method": method, "token": token, "time": now_s}
        return ("publish", self.auth_topic, json.dumps(msg).encode())

    def release(self, auth_ref):
        """Give back an online authorization that no session used (the session did not start,
        or the accept came after the charger had moved on)."""
        req = _hex(self.urandom(8))
        self.releasing.append((req, auth_ref))  # its signed reply must name both
        if len(self.releasing) > _MAX_RELEASING:
            self.releasing.pop(0)  # no reply came (offline): its hold expires at the bureau
        msg = {"v": 1, "type": "release", "req": req, "auth_ref": auth_ref}
        return ("publish", self.auth_topic, json.dumps(msg).encode())

    def card_tap(self, uid, now_s, now_ms, online, charger):
        """A card at the reader: ask the bureau when online, else decide from the list."""
        uid = uid.upper()
        if online and self.pending_for("card", uid) is None:
            return [self.request("card", uid, now_s, now_ms)]
        if online:
            return []  # the same card is already being asked about
        return [("decision", self.offline(uid, now_s, charger))]

    def pending_for(self, method, token):
        for req in self.pending:
            p = self.pending[req]
            if p[0] == method and p[1] == token:
                return req
        return None

    def on_reply(self, payload, now_s, now_ms, charger):
        """A message on the reply topic. Acks and rejects of receipts are the charger's
        (`Charger.on_reply`); this takes "auth" and "release" (signed, v 2) and "start" (v 1:
        its token is redeemed at the bureau, which refuses one it did not issue). Returns
        actions."""
        try:
            msg = json.loads(payload)
            kind = msg.get("type")
        except (ValueError, AttributeError):
            return []
        if kind == "auth":
            return self._on_auth(msg, now_s, charger)
        if kind == "release":
            return self._on_release(msg)
        if msg.get("v") != 1:
            return []
        if kind == "start":
            token = msg.get("token")
            if not isinstance(token, str) or not token.startswith("app:"):
                return []
            if charger.session is not None or self.pending_for("app", token) is not None:
                return [("event", ("start_ignored", token))]  # busy: the token expires unused
            return [self.request("app", token, now_s, now_ms)]
        return []

    def _on_release(self, msg):
        req, ref = msg.get("req"), msg.get("auth_ref")
        asked = (req, ref) in self.releasing if isinstance(req, str) and isinstance(ref, str) else False
        if msg.get("v") != signed_reply.RELEASE_VERSION:
            reason = "unsigned"  # v1 release replies carried no signature
        elif not asked:
            reason = "not_pending"  # answered before (a replay), or never asked
        else:
            reason = self._check_signed_reply(msg, signed_reply.release_bytes)
        if reason is not None:
            self.refused_replies[reason] = self.refused_replies.get(reason, 0) + 1
            return [("event", ("release_reply_refused", req, reason))]
        self.releasing.remove((req, ref))
        return [("event", ("released", ref, msg["released"]))]

    def _on_auth(self, msg, now_s, charger):
        req = msg.get("req")
        p = self.pending.get(req) if isinstance(req, str) else None
        accept = msg.get("decision") == "accept"
        if p is None and not (accept and isinstance(msg.get("auth_ref"), str)):
            return []  # a late or foreign reject: nothing to do, no signature to check
        reason = self._check_reply(msg)
        if reason is not None:
            # forged, replayed onto another request, or unsigned: as if no answer came, so the
            # request runs into its timeout and a card falls back to the offline list
            self.refused_replies[reason] = self.refused_replies.get(reason, 0) + 1
            return [("event", ("auth_reply_refused", req, reason))]
        if p is None:
            # Late (the charger already decided offline) or not ours: free what it holds.
            return [self.release(msg["auth_ref"])]
        del self.pending[req]
        method, token = p[0], p[1]
        if accept:
            amount, wallet, ref = msg.get("authorized_fen"), msg.get("wallet_id"), msg.get("auth_ref")
            if not (isinstance(amount, int) and amount > 0 and isinstance(wallet, str) and isinstance(ref, str)):
                d = _reject(method, token, "malformed", "accept without amount, wallet or auth_ref")
                return [("decision", d)]
            return [("decision", {"decision": "accept", "method": _WIRE_METHOD[method], "id_token": token,
                                  "wallet_id": wallet, "authorized_fen": amount, "auth_ref": ref,
                                  "reason": None, "detail": None})]
        reason = str(msg.get("reason") or "rejected")
        if method == "card" and reason in _TRANSIENT:
            return [("decision", self.offline(token, now_s, charger))]
        return [("decision", _reject(method, token, reason, str(msg.get("detail") or "")))]

    def _check_reply(self, msg):
        if msg.get("v") != signed_reply.AUTH_REPLY_VERSION:
            return "unsigned"  # v1 replies carried no signature
        return self._check_signed_reply(msg, signed_reply.auth_reply_bytes)

    def _check_signed_reply(self, msg, signed_bytes):
        if not self.trust.provisioned:
            self.trust = trust_mod.load(self.flash)  # provisioned after load
        return signed_reply.check(self.trust, self.verify,
                                  signed_bytes(self.trust.chain_id, self.charger_id, msg), msg)

    def poll(self, now_s, now_ms, charger):
        """Requests without a reply in time: a card falls back to the offline list."""
        out = []
        for req in list(self.pending):
            p = self.pending[req]
            if ticks_diff(now_ms, p[2]) >= self.timeout_ms:
                del self.pending[req]
                if p[0] == "card":
                    out.append(("decision", self.offline(p[1], now_s, charger)))
                else:
                    out.append(("decision", _reject(p[0], p[1], "timeout", "no answer from the bureau")))
        return out

    # ---- offline -----------------------------------------------------------------------

    def offline(self, uid, now_s, charger):
        """Decide from the installed list: accept up to the card's limit less what it has spent
        offline since the list's balances were taken."""
        uid = uid.upper()
        m = self.manifest
        if not self.provisioned:
            return _reject("card", uid, "not_provisioned", "no bureau keys on this charger", True)
        if m is None:
            return _reject("card", uid, "no_list", "no offline list received yet", True)
        if now_s >= m["expires_at"]:
            return _reject("card", uid, "list_expired", "offline list expired at %d" % m["expires_at"], True)
        found = self.lookup(uid)
        if found is None:
            return _reject("card", uid, "not_on_list", "card not on the offline list (unknown, or too little balance)", True)
        wallet, limit = found
        remaining = limit - self.offline_used(uid, charger)
        if remaining < 1:
            return _reject("card", uid, "offline_limit_used", "the card's offline limit is spent", True)
        return {"decision": "accept", "method": METHOD_OFFLINE, "id_token": uid, "wallet_id": wallet,
                "authorized_fen": remaining, "auth_ref": "offline:%d" % m["list_version"],
                "reason": None, "detail": None}

    def lookup(self, uid):
        m = self.manifest
        if m is None:
            return None
        idx = -1
        for i in range(len(m["pages"])):
            if m["pages"][i][0] <= uid:
                idx = i
            else:
                break
        if idx < 0:
            return None
        digest = m["pages"][idx][1]
        page = self.flash.read(_page_name(digest))
        if page is None or _sha256(page) != digest:
            return None  # damaged on flash: treated as absent, never trusted
        return find_in_page(page, uid)

    def offline_used(self, uid, charger):
        """Fen this card spent offline that the installed list's balances do not include: the
        running session, receipts not yet acknowledged, and acked ones committed after it."""
        total = 0
        s = charger.session
        if s is not None:
            a = s.d["auth"]
            if a["method"] == METHOD_OFFLINE and a["id_token"] == uid:
                total += a["authorized_fen"]
        for seq in charger.outbox.pending():
            env = charger.outbox.get(seq)
            if env is None:
                continue
            try:
                r = receipt.decode_envelope(env)[0]
            except receipt.ReceiptError:
                continue
            if r["auth_method"] == METHOD_OFFLINE and r["id_token"] == uid:
                total += r["amount_fen"]
        version = self.manifest["list_version"] if self.manifest else -1
        for key in self.used:
            u = self.used[key]
            if u[0] == uid and u[2] > version:
                total += u[1]
        return total

    def note_ack(self, envelope, ack):
        """Before the charger drops an acked receipt from its outbox: remember an offline one
        until a list that includes its commit height arrives."""
        if envelope is None or len(envelope) < 40:
            return
        at = 2 + envelope[1] + 4 + 16  # version, charger_id, seq, session_id: then auth_method
        if at >= len(envelope) or envelope[at] != METHOD_OFFLINE:
            return  # an online receipt: nothing to remember, no need to parse it
        if receipt.receipt_id(envelope) != ack.get("receipt"):
            return
        try:
            r = receipt.decode_envelope(envelope)[0]
        except receipt.ReceiptError:
            return
        height = ack.get("height")
        if r["auth_method"] != METHOD_OFFLINE or not isinstance(height, int):
            return
        if self.manifest is not None and height <= self.manifest["list_version"]:
            return
        self.used[str(r["seq"])] = [r["id_token"], r["amount_fen"], height]
        while len(self.used) > _MAX_USED:
            oldest = None
            for key in self.used:
                if oldest is None or self.used[key][2] < self.used[oldest][2]:
                    oldest = key
            del self.used[oldest]
        self.flash.write_atomic(USED_FILE, json.dumps(self.used).encode())

    # ---- receiving the list ------------------------------------------------------------

    def on_bureau_message(self, topic, payload, now_s):
        """A message on ev/v1/bureau/authlist/#: returns "installed", "staged", "stored",
        "stale" or "empty"; raises AuthzError for one that must not be used."""
        if not payload:
            return "empty"  # the bureau cleared a page topic it no longer uses
        if topic == MANIFEST_TOPIC:
            return self._on_manifest(payload, now_s)
        if topic.startswith(PAGE_TOPIC_PREFIX):
            return self._on_page(payload)
        raise AuthzError("malformed", "unknown list topic " + topic)

    def _newer(self, m, than):
        return than is None or (m["list_version"], m["issued_at"]) > (than["list_version"], than["issued_at"])

    def _check_signed(self, doc_chain, signer, tag, body, sig):
        if self.trust.provisioned and doc_chain != self.trust.chain_id:
            raise AuthzError("wrong_chain", "signed for chain " + doc_chain)
        reason = self.trust.check(self.verify, signer, tag + body, sig)
        if reason == "not_provisioned":
            raise AuthzError(reason, "no bureau keys on this charger")
        if reason == "unknown_signer":
            raise AuthzError(reason, signer + " is not a bureau this charger trusts")
        if reason is not None:
            raise AuthzError(reason, "not signed by " + signer)

    def _on_manifest(self, env, now_s):
        m, body, sig = decode_manifest(env)
        if not self._newer(m, self.manifest) or (self.next is not None and not self._newer(m, self.next)):
            return "stale"  # checked before the costly signature: retained copies come again
        self._check_signed(m["chain_id"], m["signer"], LIST_TAG, body, sig)
        if now_s >= m["expires_at"]:
            raise AuthzError("expired", "list expired at %d" % m["expires_at"])
        self.flash.write_atomic(NEXT_FILE, bytes(env))
        self.next = m
        return self._try_install() or "staged"

    def _on_page(self, page):
        page = bytes(page)
        decode_page(page)  # never store what does not parse
        name = _page_name(_sha256(page))
        if self.flash.read(name) is None:
            self.flash.write_atomic(name, page)
            self._collect(name, _MAX_ORPHANS)
        return self._try_install() or "stored"

    def _try_install(self):
        m = self.next
        if m is None:
            return None
        entries = 0
        for first, digest in m["pages"]:
            page = self.flash.read(_page_name(digest))
            if page is None or _sha256(page) != digest:
                return None
            entries += struct.unpack(">H", page[1:3])[0]
        if entries != m["entries"]:
            return None
        old = self.manifest
        self.flash.write_atomic(LIST_FILE, self.flash.read(NEXT_FILE))  # the one atomic switch
        self.flash.remove(NEXT_FILE)
        self.manifest, self.next = m, None
        if old is not None:
            now_named = [_page_name(d) for _, d in m["pages"]]
            for _, d in old["pages"]:
                if _page_name(d) not in now_named:
                    self.flash.remove(_page_name(d))
        stale = [k for k in self.used if self.used[k][2] <= m["list_version"]]
        if stale:
            for k in stale:
                del self.used[k]
            self.flash.write_atomic(USED_FILE, json.dumps(self.used).encode())
        return "installed"

    def _collect(self, keep, allowed):
        named = {}
        for m in (self.manifest, self.next):
            if m is not None:
                for _, d in m["pages"]:
                    named[_page_name(d)] = True
        orphans = []
        for n in self.flash.listdir(_PAGES):
            path = _PAGES + "/" + n
            if path not in named and path != keep:
                orphans.append(path)
        for path in orphans[:max(0, len(orphans) - allowed)]:
            self.flash.remove(path)

    # ---- the signed tariff -------------------------------------------------------------

    def open_tariff(self, env, current=None):
        """A tariff push: (tariff document, issued_at, effective_from) when it is signed by a
        trusted bureau and newer than the last one taken, None for an old or repeated push.
        Raises AuthzError."""
        if not env:
            return None
        t, body, sig = decode_tariff_push(env)
        raw = self.flash.read(TARIFF_SEEN_FILE)
        if raw and t["issued_at"] <= int(raw):
            return None
        self._check_signed(t["chain_id"], t["signer"], TARIFF_TAG, body, sig)
        try:
            doc = json.loads(t["doc"])
            parsed = Tariff(doc)
        except (ValueError, KeyError, TypeError, TariffError):
            raise AuthzError("malformed", "the signed tariff document is not a tariff")
        if current is not None and current.tariff_id == parsed.tariff_id and parsed.version < current.version:
            raise AuthzError("rollback", "tariff %s v%d is older than v%d" % (parsed.tariff_id, parsed.version,
                                                                              current.version))
        return doc, t["issued_at"], t["effective_from"]

    def tariff_taken(self, issued_at):
        """After the charger stored the tariff: later copies of this push are ignored."""
        self.flash.write_atomic(TARIFF_SEEN_FILE, str(issued_at).encode())


def _reject(method, token, reason, detail, offline=False):
    m = METHOD_OFFLINE if offline else _WIRE_METHOD.get(method, METHOD_CARD)
    return {"decision": "reject", "method": m, "id_token": token, "wallet_id": None, "authorized_fen": 0,
            "auth_ref": None, "reason": reason, "detail": detail}
