"""Authorization decisions, the offline list and the tariff push (docs/authorization.md).

No MQTT and no HTTP here: the shell (`authz/mqtt.py`) hands in request payloads and publishes
what comes back; the API calls `app_start` and `wallet_view`. Time comes from `self.now`.
Every method takes the service's lock, so requests from the MQTT worker, the HTTP API and
commits from block production see one consistent book of holds.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from ..errors import ReasonedError
from ..ledger.tx import ID_RE
from . import wire
from ..config import AuthzSettings
from .holds import Hold, HoldBook

log = logging.getLogger(__name__)

METHODS = ("card", "app")
APP_TOKEN_RE = re.compile(r"app:[0-9a-f]{16}\Z")
_PRINTABLE = re.compile(r"[\x20-\x7e]{1,64}\Z")
REPLAY_CACHE = 10_000  # (charger, req) pairs whose reply is resent to a duplicate request
REPLAY_KEEP_S = 600
# A tariff version is pushed this long before its effective time: chargers hold it until their
# clock reaches that time, and one whose clock runs ahead of the bureau's has it already.
TARIFF_LEAD_S = 600


class AuthzError(ReasonedError):
    """A refused API call: reason (machine) and detail (human)."""


@dataclass
class AppStart:
    token: str
    wallet_id: str
    charger_id: str
    cap_fen: int
    expires_s: int
    used: bool = False

    def as_json(self) -> dict:
        return {"token": self.token, "charger_id": self.charger_id, "cap_fen": self.cap_fen,
                "expires": self.expires_s, "used": self.used}


def _reject(req, reason: str, detail: str, wallet_id: str | None = None) -> dict:
    return {"v": wire.AUTH_REPLY_VERSION, "type": "auth", "req": req, "decision": "reject", "wallet_id": wallet_id, "authorized_fen": 0,
            "auth_ref": None, "reason": reason, "detail": detail}


class AuthzService:
    def __init__(self, node_id: str, chain, signing_key, metrics, settings: AuthzSettings, engine,
                 tariff_id: str, now=time.time) -> None:
        self.node_id = node_id
        self.chain = chain
        self.key = signing_key
        self.metrics = metrics
        self.settings = settings
        self.tariff_id = tariff_id
        self.now = lambda: int(now())
        self.lock = threading.RLock()
        self.holds = HoldBook(engine)
        self.starts: dict[str, AppStart] = {}
        self.last_seen: dict[str, int] = {}  # card uid -> last online request, to rank list entries
        self._replies: OrderedDict[tuple[str, str], tuple[int, dict]] = OrderedDict()
        self.list_dirty = threading.Event()  # balances, cards or holds changed since the last list
        self.tariff_dirty = threading.Event()
        self.list_dirty.set()
        self.tariff_dirty.set()
        self._last_issued = 0
        self._next_push_at: int | None = None  # when the next version of the pushed tariff is pushed
        self.seen_height = chain.height  # the last block whose receipts ended their holds
        self.holds.load(self.now())
        chain.on_commit(self.on_commit)

    # ---- online authorization (charger request -> reply) ---------------------------------

    def handle(self, charger_id: str, payload: bytes) -> dict:
        """A message on ev/v1/charger/<id>/auth; returns the reply for the charger."""
        with self.lock:
            reply = self._handle(charger_id, payload)
        if reply["type"] == "auth" and not reply.get("repeated"):
            self.metrics.inc("auth_" + reply["decision"], reply["reason"] or "")
        return {k: v for k, v in reply.items() if k != "repeated"}

    def signed(self, charger_id: str, reply: dict) -> dict:
        """An authorization or release reply as it goes to the charger: signed with this node's
        key, bound to the chain, the charger and the request's `req` (wire.sign_auth_reply,
        wire.sign_release_reply)."""
        sign = wire.sign_release_reply if reply["type"] == "release" else wire.sign_auth_reply
        return sign(reply, self.chain.genesis.chain_id, self.node_id, charger_id, self.key)

    def _handle(self, charger_id: str, payload: bytes) -> dict:
        if len(payload) > self.settings.max_request_bytes:
            return _reject(None, "oversized", f"{len(payload)} bytes, limit {self.settings.max_request_bytes}")
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return _reject(None, "malformed", "request is not JSON")
        if not isinstance(msg, dict):
            return _reject(None, "malformed", "request must be a JSON object")
        req = msg.get("req")
        if not (isinstance(req, int) and not isinstance(req, bool) and 0 <= req < 2**53) and \
                not (isinstance(req, str) and _PRINTABLE.match(req)):
            return _reject(None, "malformed", "req must be an integer 0..2^53 or 1-64 printable characters")
        if msg.get("v") != 1:
            return _reject(req, "unsupported_version", f"request version {msg.get('v')!r}; this node speaks v 1")
        kind = msg.get("type", "authorize")
        if kind == "release":
            return self._release(charger_id, req, msg.get("auth_ref"))
        if kind != "authorize":
            return _reject(req, "malformed", f"unknown request type {kind!r}")
        now = self.now()
        key = (charger_id, str(req))
        seen = self._replies.get(key)
        if seen is not None and seen[0] > now - REPLAY_KEEP_S:
            self.metrics.inc("auth_repeated")
            return {**seen[1], "repeated": True}  # a QoS 1 duplicate or a resend: the same answer, no second hold
        reply = self._authorize(charger_id, req, msg, now)
        self._replies[key] = (now, reply)
        while len(self._replies) > REPLAY_CACHE:
            self._replies.popitem(last=False)
        return reply

    def _authorize(self, charger_id: str, req, msg: dict, now: int) -> dict:
        method, token, t = msg.get("method"), msg.get("token"), msg.get("time")
        if method not in METHODS:
            return _reject(req, "unknown_method", f"method must be one of {', '.join(METHODS)}")
        if not isinstance(token, str) or not token:
            return _reject(req, "malformed", "token must be a non-empty string")
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            return _reject(req, "malformed", "time must be Unix seconds")
        state = self.chain.state
        if charger_id not in state.chargers:
            return _reject(req, "unknown_charger", f"charger {charger_id} is not enrolled")
        if charger_id in state.retired:
            return _reject(req, "charger_retired", f"charger {charger_id} is retired")
        return self._grant(charger_id, req, method, token, now)

    def authorize_ocpp(self, charger_id: str, method: str, token: str) -> dict:
        """The decision for an OCPP charge point's Authorize or start (bureau/ocpp): the same
        rules and holds as a charger's online request; the reply is not signed (OCPP answers
        over the charge point's own authenticated connection)."""
        with self.lock:
            state = self.chain.state
            if charger_id not in state.ocpp_chargers:
                reply = _reject(None, "unknown_charger", f"charge point {charger_id} is not enrolled for OCPP")
            elif charger_id in state.retired:
                reply = _reject(None, "charger_retired", f"charge point {charger_id} is retired")
            else:
                reply = self._grant(charger_id, None, method, token, self.now())
        self.metrics.inc("auth_" + reply["decision"], reply["reason"] or "")
        return reply

    def release_ocpp(self, charger_id: str, auth_ref: str) -> bool:
        """End an OCPP charge point's hold that no transaction used (an Authorize nothing started with)."""
        with self.lock:
            return self._release(charger_id, None, auth_ref)["released"]

    def _grant(self, charger_id: str, req, method: str, token: str, now: int) -> dict:
        """The decision for an enrolled charger: the token's wallet, its balance less the open
        holds, and the hold that promises the amount, durable before the reply leaves."""
        state = self.chain.state
        if method == "card":
            if not ID_RE.match(token):
                return _reject(req, "malformed", "a card token is the card UID (1-32 of A-Z a-z 0-9 . _ -)")
            self.last_seen[token] = now
            wallet_id = state.cards.get(token)
            if wallet_id is None:
                return _reject(req, "unknown_card", f"card {token} is not bound to a wallet")
            if state.card_blocked(token):
                return _reject(req, "card_blocked", f"card {token} is blocked", wallet_id)
            cap = self.settings.max_authorize_fen
        else:
            if not APP_TOKEN_RE.match(token):
                return _reject(req, "malformed", "an app token is app:<16 hex digits>")
            start = self.starts.get(token)
            if start is None:
                return _reject(req, "unknown_token", "no phone start with this token (never issued, or forgotten)")
            if start.charger_id != charger_id:
                return _reject(req, "wrong_charger", "this token was issued for another charger")
            if start.used:
                return _reject(req, "token_used", "this token was already redeemed")
            if start.expires_s <= now:
                return _reject(req, "token_expired", f"the token expired at {start.expires_s}")
            wallet_id, cap = start.wallet_id, start.cap_fen
        wallet = state.wallets.get(wallet_id)
        if wallet is None:
            return _reject(req, "unknown_wallet", f"wallet {wallet_id} does not exist")
        if wallet.balance < 0:
            return _reject(req, "in_debt", f"the wallet owes {-wallet.balance} fen; a top-up settles it", wallet_id)
        held = self.holds.held_fen(wallet_id, now)
        available = wallet.balance - held
        amount = min(available, cap)
        if amount < self.settings.min_authorize_fen:
            return _reject(req, "insufficient_balance",
                           f"balance {wallet.balance} fen, {held} fen held by open authorizations; "
                           f"at least {self.settings.min_authorize_fen} fen must be available", wallet_id)
        hold = Hold(f"auth:{secrets.token_hex(8)}", wallet_id, charger_id, method, token, amount, now,
                    now + self.settings.hold_ttl_s)
        self.holds.add(hold)  # durable before the promise leaves the node
        if method == "app":
            self.starts[token].used = True
        self.list_dirty.set()
        return {"v": wire.AUTH_REPLY_VERSION, "type": "auth", "req": req, "decision": "accept", "wallet_id": wallet_id,
                "authorized_fen": amount, "auth_ref": hold.auth_ref, "reason": None, "detail": None,
                "method": method, "token": token, "expires": hold.expires_s}

    def _release(self, charger_id: str, req, auth_ref) -> dict:
        if not isinstance(auth_ref, str):
            auth_ref = None  # echoed back under the signature, which covers text only
        out = {"type": "release", "req": req, "auth_ref": auth_ref, "released": False, "reason": None}
        hold = self.holds.get(auth_ref) if auth_ref is not None else None
        if hold is None:
            out["reason"] = "unknown_auth_ref"
        elif hold.charger_id != charger_id:
            out["reason"] = "not_your_hold"
        else:
            self.holds.release([auth_ref], self.now(), "released")
            self.list_dirty.set()
            out["released"] = True
        self.metrics.inc("auth_release", out["reason"] or "released")
        return out

    # ---- phone start ---------------------------------------------------------------------

    def app_start(self, wallet_id: str, charger_id: str, cap_fen: int) -> tuple[AppStart, dict]:
        """A driver's signed start at a charger: a one-time token and the command to the charger."""
        s = self.settings
        with self.lock:
            state = self.chain.state
            if charger_id not in state.chargers and charger_id not in state.ocpp_chargers:
                raise AuthzError("unknown_charger", f"charger {charger_id} is not enrolled")
            if charger_id in state.retired:
                raise AuthzError("charger_retired", f"charger {charger_id} is retired")
            if not s.min_authorize_fen <= cap_fen <= s.max_authorize_fen:
                raise AuthzError("bad_cap", f"cap_fen must be {s.min_authorize_fen}..{s.max_authorize_fen}")
            now = self.now()
            wallet = state.wallets[wallet_id]
            if wallet.balance < 0:
                raise AuthzError("in_debt", f"the wallet owes {-wallet.balance} fen; a top-up settles it")
            available = wallet.balance - self.holds.held_fen(wallet_id, now)
            if available < s.min_authorize_fen:
                raise AuthzError("insufficient_balance", f"{available} fen available, at least "
                                                         f"{s.min_authorize_fen} needed")
            self._forget_starts(now)
            start = AppStart("app:" + secrets.token_hex(8), wallet_id, charger_id, cap_fen, now + s.app_token_ttl_s)
            self.starts[start.token] = start
        command = {"v": 1, "type": "start", "token": start.token, "wallet_id": wallet_id, "cap_fen": cap_fen,
                   "expires": start.expires_s}
        self.metrics.inc("app_starts")
        return start, command

    def _forget_starts(self, now: int) -> None:
        # a used or expired token is kept for one more TTL so its repeat gets a precise reason
        for tok in [t for t, st in self.starts.items() if st.expires_s + self.settings.app_token_ttl_s <= now]:
            del self.starts[tok]

    def wallet_view(self, wallet_id: str) -> dict:
        with self.lock:
            now = self.now()
            wallet = self.chain.state.wallets[wallet_id]
            holds = self.holds.of_wallet(wallet_id, now)
            held = sum(h.amount_fen for h in holds)
            starts = [st.as_json() for st in self.starts.values()
                      if st.wallet_id == wallet_id and not st.used and st.expires_s > now]
        return {"wallet_id": wallet_id, "balance_fen": wallet.balance, "held_fen": held,
                "available_fen": wallet.balance - held, "holds": [h.as_json() for h in holds],
                "pending_starts": starts}

    # ---- commits and time ----------------------------------------------------------------

    def on_commit(self, block, ex) -> None:
        """Called by the chain after a block is stored: forget the holds its receipts settled
        (the block's transaction released them in the database)."""
        try:
            with self.lock:
                if any(eff.wallet_id is not None for eff in ex.effects):
                    self.list_dirty.set()
                self.holds.settled([(eff.auth_ref, eff.charger_id) for eff in ex.effects
                                    if eff.kind in ("receipt", "ocpp_bill") and eff.auth_ref])
                if ex.tariffs:
                    self.tariff_dirty.set()
                self.seen_height = block.height
        except Exception:  # never let authorization bookkeeping break a commit
            log.exception("authorization bookkeeping failed at block %s", block.height)

    def sweep(self) -> int:
        with self.lock:
            now = self.now()
            ended = self.holds.expire(now)
            self._forget_starts(now)
            for key in [k for k, (t, _) in self._replies.items() if t <= now - REPLAY_KEEP_S]:
                del self._replies[key]
            if ended:
                self.list_dirty.set()
                self.metrics.inc("auth_hold_expired", n=len(ended))
            if self._next_push_at is not None and now >= self._next_push_at:
                self._next_push_at = None
                self.tariff_dirty.set()  # the next version comes in force soon: push it ahead
            return len(ended)

    # ---- the offline list ----------------------------------------------------------------

    def list_entries(self) -> tuple[int, list[wire.Entry]]:
        """(chain height, entries ascending by uid): each card's offline limit from its wallet's
        committed balance, less open holds, shared among the wallet's cards, capped."""
        s = self.settings
        with self.chain.lock:
            state = self.chain.state
            height = state.height
            # a blocked card is left off: the list format has no flag, so chargers refuse it not_on_list
            cards = [(uid, w) for uid, w in state.cards.items() if uid not in state.blocked_cards]
            balances = {w: v.balance for w, v in state.wallets.items()}
        with self.lock:
            now = self.now()
            held = self.holds.wallets_held(now)
            seen = dict(self.last_seen)
        per_wallet: dict[str, int] = {}
        for _, w in cards:
            per_wallet[w] = per_wallet.get(w, 0) + 1
        entries = []
        for uid, w in cards:
            available = balances.get(w, 0) - held.get(w, 0)
            limit = min(s.offline_cap_fen, available // per_wallet[w], wire.MAX_LIMIT_FEN)
            if limit >= s.offline_min_fen:
                entries.append(wire.Entry(uid, w, limit))
        if len(entries) > s.list_max_entries:
            # keep the cards drivers used most recently here; the rest need the network
            entries.sort(key=lambda e: (-seen.get(e.uid, 0), e.uid))
            self.metrics.inc("authz_list_truncated")
            entries = entries[:s.list_max_entries]
        entries.sort(key=lambda e: e.uid)
        return height, entries

    def build_list(self) -> tuple[bytes, list[bytes], wire.Manifest]:
        """The signed manifest and its pages, ready to publish."""
        height, entries = self.list_entries()
        pages = wire.paginate(entries)
        with self.lock:
            issued = max(self.now(), self._last_issued + 1)  # (version, issued_at) always grows
            self._last_issued = issued
        while True:
            m = wire.Manifest(self.chain.genesis.chain_id, self.node_id, height, issued,
                              issued + self.settings.list_ttl_s, sum(n for _, _, n in pages),
                              tuple((first, wire.page_hash(p)) for p, first, _ in pages))
            if len(pages) <= wire.MAX_PAGES and len(wire.manifest_body(m)) + wire.SIG_LEN <= wire.MAX_MESSAGE:
                return wire.sign_manifest(m, self.key), [p for p, _, _ in pages], m
            pages = pages[:-1]  # more than one manifest can name: the tail needs the network
            self.metrics.inc("authz_list_truncated")

    # ---- the tariff push -----------------------------------------------------------------

    def tariff_push(self) -> tuple[tuple[str, int], bytes] | None:
        """The signed push of the node's tariff: the version in force now, or from
        TARIFF_LEAD_S before the next version's time that one, with its effective time (a charger
        keeps it until its own clock reaches that time, so no session it starts before then is
        billed by it, and none after by the old one). `sweep` marks the push due again then."""
        now = self.now()
        with self.chain.lock:
            state = self.chain.state
            t = state.tariff_in_force(self.tariff_id, now)
            since = state.tariff_from[(t.tariff_id, t.version)] if t is not None else 0
            upcoming = state.next_tariff(self.tariff_id, now)
        if upcoming is not None and upcoming[1] - TARIFF_LEAD_S <= now:
            (t, since), upcoming = upcoming, None
            with self.chain.lock:
                upcoming = self.chain.state.next_tariff(self.tariff_id, since)
        self._next_push_at = upcoming[1] - TARIFF_LEAD_S if upcoming is not None else None
        if t is None:
            return None
        with self.lock:
            issued = max(now, self._last_issued + 1)  # chargers take only a newer push
            self._last_issued = issued
        push = wire.TariffPush(self.chain.genesis.chain_id, self.node_id, issued, t.to_doc(), since)
        return (t.tariff_id, t.version), wire.sign_tariff(push, self.key)
