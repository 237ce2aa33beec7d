"""The CSMS's decisions, for both OCPP versions, without I/O: authorizations (the node's holds),
transactions in progress with their meter readings, and the signed bill of each finished one
(ledger/ocppbill.py). The protocol handlers (`v16.py`, `v201.py`) translate messages into these
calls; time comes in as arguments.

A transaction is kept per charge point, not per connection, so a charge point that reconnects
(to this node) carries on with it, and in the node's database (`store`), so a restarted node does
too; it is forgotten once its bill commits.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field

from ..ledger import ocppbill
from ..ledger.tx import tx_hash

log = logging.getLogger(__name__)
PENDING_AUTH_S = 300  # an Authorize's hold waits this long for the transaction that uses it
CARD, APP = "card", "app"


def token_method(id_token: str) -> str:
    """A phone start's one-time token (`app:<16 hex>`, sent as the RemoteStart's idTag) or a card UID."""
    return APP if id_token.startswith("app:") else CARD


@dataclass
class Transaction:
    charger_id: str
    transaction_id: str
    ocpp_version: str
    id_token: str
    wallet_id: str
    auth_ref: str
    authorized_fen: int
    tariff_id: str
    start_time: int
    readings: list[list[int]] = field(default_factory=list)  # [unix s, register Wh], ascending
    ocmf: str | None = None
    stop_asked: bool = False  # the CSMS asked the charge point to stop (prepaid amount reached)


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str | None  # the authorization service's reason (docs/authorization.md)
    detail: str | None
    wallet_id: str | None = None
    auth_ref: str | None = None
    authorized_fen: int = 0


@dataclass(frozen=True)
class BillOutcome:
    """What became of a stop: a bill to commit (`tx`), one already on chain, or a refusal."""
    tx: bytes | None
    committed: bool
    reason: str | None = None
    detail: str | None = None


class CsmsCore:
    def __init__(self, node_id: str, chain, authz, signing_key, tariff_id: str, store=None) -> None:
        self.node_id = node_id
        self.chain = chain
        self.authz = authz  # AuthzService: one book of holds with the node's chargers
        self.key = signing_key
        self.tariff_id = tariff_id
        self.lock = threading.Lock()
        self.transactions: dict[tuple[str, str], Transaction] = {}
        self._pending: dict[tuple[str, str], tuple[Decision, int]] = {}  # (cp, token) -> Authorize's hold
        self.bills: dict[bytes, tuple[str, str]] = {}  # tx hash -> (cp, transaction id) waiting for a block
        self.store = store  # a TransactionStore (ocpp/store.py), or None: memory only
        if store is not None:
            kept = store.load(Transaction)
            billed = [(t.charger_id, t.transaction_id) for t in kept
                      if (t.charger_id, t.transaction_id) in chain.state.ocpp_bills]
            store.drop(billed)  # (a crash between a bill's commit and its row's removal)
            self.transactions = {(t.charger_id, t.transaction_id): t for t in kept
                                 if (t.charger_id, t.transaction_id) not in billed}
        chain.on_commit(self._on_commit)

    # ---- authorization -------------------------------------------------------------------

    def authorize(self, charger_id: str, id_token: str, now: int) -> Decision:
        """Authorize: a hold kept for the transaction that follows (its StartTransaction or
        TransactionEvent Started names the same token)."""
        self.expire_pending(now)
        with self.lock:
            held = self._pending.get((charger_id, id_token))
        if held is not None:
            return held[0]
        decision = self._decide(charger_id, id_token)
        if decision.accepted:
            with self.lock:
                self._pending[(charger_id, id_token)] = (decision, now)
        return decision

    def _decide(self, charger_id: str, id_token: str) -> Decision:
        r = self.authz.authorize_ocpp(charger_id, token_method(id_token), id_token)
        if r["decision"] != "accept":
            return Decision(False, r["reason"], r["detail"], r.get("wallet_id"))
        return Decision(True, None, None, r["wallet_id"], r["auth_ref"], r["authorized_fen"])

    def expire_pending(self, now: int) -> None:
        """Release the holds of Authorizes no transaction used within PENDING_AUTH_S."""
        with self.lock:
            stale = [(k, d) for k, (d, at) in self._pending.items() if at + PENDING_AUTH_S <= now]
            for k, _ in stale:
                del self._pending[k]
        for (cp, _), d in stale:
            self.authz.release_ocpp(cp, d.auth_ref)

    # ---- transactions --------------------------------------------------------------------

    def new_transaction_id(self, charger_id: str) -> str:
        """OCPP 1.6: the CSMS names the transaction, an integer; random and none billed within the
        billing horizon (one bill per (charge point, transaction id) within it, docs/ledger.md). An
        id drawn again after the horizon is another bill, kept beside the first."""
        while True:
            tid = str(secrets.randbelow(2**31 - 1) + 1)
            if (charger_id, tid) not in self.chain.state.ocpp_bills and (charger_id, tid) not in self.transactions:
                return tid

    def start(self, charger_id: str, transaction_id: str, ocpp_version: str, id_token: str, meter_wh: int | None,
              at: int, now: int) -> tuple[Transaction | None, Decision]:
        """A transaction begins with `id_token` (the hold of its Authorize, else a new decision);
        its first reading is (at, meter_wh) when the charge point sent one."""
        with self.lock:
            known = self.transactions.get((charger_id, transaction_id))
            if known is not None:  # a resend after a reconnect
                return known, Decision(True, None, None, known.wallet_id, known.auth_ref, known.authorized_fen)
            held = self._pending.pop((charger_id, id_token), None)
        decision = held[0] if held is not None else self._decide(charger_id, id_token)
        if not decision.accepted:
            return None, decision
        t = Transaction(charger_id, transaction_id, ocpp_version, id_token, decision.wallet_id, decision.auth_ref,
                        decision.authorized_fen, self.tariff_id, at)
        if meter_wh is not None:
            t.readings.append([at, meter_wh])
        with self.lock:
            self.transactions[(charger_id, transaction_id)] = t
            self._save(t, now)
        return t, decision

    def _save(self, t: Transaction, now: int) -> None:
        if self.store is not None:
            self.store.save(t, now)

    def transaction(self, charger_id: str, transaction_id: str) -> Transaction | None:
        with self.lock:
            return self.transactions.get((charger_id, transaction_id))

    def meter(self, t: Transaction, readings: list[tuple[int, int]], ocmf: str | None = None, now: int = 0) -> bool:
        """Readings of a running transaction; True when its cost reached the authorized amount,
        so the CSMS stops it (asked once). Of a run of readings in one tariff period only the last
        is kept (`ocppbill.boundary_readings`, as it goes): a long transaction stays small."""
        with self.lock:
            tariff = self.chain.state.tariff_in_force(t.tariff_id, t.start_time)
            changed = ocmf is not None and ocmf != t.ocmf
            for at, wh in sorted(readings):
                if not t.readings:
                    t.start_time = min(t.start_time, at)
                elif at < t.readings[-1][0] or wh < t.readings[-1][1] or [at, wh] == t.readings[-1]:
                    continue  # out of order or repeated: the register only goes up
                if len(t.readings) >= 2 and tariff is not None \
                        and tariff.kind_at(t.readings[-1][0]) == tariff.kind_at(at):
                    t.readings.pop()  # the new reading ends the same period run
                t.readings.append([at, wh])
                changed = True
            if ocmf is not None:
                t.ocmf = ocmf
            if changed:
                self._save(t, now)
            if tariff is None or t.stop_asked or len(t.readings) < 2:
                return False
            cost = tariff.amount_fen(ocppbill.periods_of(tariff, t.readings))
            if cost >= t.authorized_fen:
                t.stop_asked = True
                return True
            return False

    def stop(self, t: Transaction, meter_wh: int | None, at: int, reason: str, now: int,
             ocmf: str | None = None) -> BillOutcome:
        """The signed bill of a finished transaction, checked against the committed state the way
        every bureau will check it."""
        state = self.chain.state
        if (t.charger_id, t.transaction_id) in state.ocpp_bills:
            return BillOutcome(None, True)
        with self.lock:
            if ocmf is not None:
                t.ocmf = ocmf
            readings = [r for r in t.readings if r[0] <= at]
            if meter_wh is not None:
                readings = [r for r in readings if r[1] <= meter_wh] + [[at, meter_wh]]
            elif readings:
                readings[-1] = [at, readings[-1][1]]
        if len(readings) < 2:
            readings = [readings[0], [at, readings[0][1]]] if readings else []
        if not readings:
            return BillOutcome(None, False, "no_readings", "the charge point sent no energy register reading")
        tariff = state.tariff_in_force(t.tariff_id, readings[0][0])
        if tariff is None:
            return BillOutcome(None, False, "tariff_not_in_force", f"no version of {t.tariff_id} was in force at "
                                                                   f"{readings[0][0]}")
        kept = ocppbill.boundary_readings(tariff, readings)
        if len(kept) > ocppbill.MAX_READINGS:  # more period changes than a bill names: the busiest ones stay
            kept = kept[:ocppbill.MAX_READINGS - 1] + kept[-1:]
        periods = ocppbill.periods_of(tariff, kept)
        doc = {"v": 1, "bureau": self.node_id, "charger_id": t.charger_id, "ocpp": t.ocpp_version,
               "transaction_id": t.transaction_id, "id_token": t.id_token, "wallet_id": t.wallet_id,
               "auth_ref": t.auth_ref, "start_time": kept[0][0], "end_time": kept[-1][0], "readings": kept,
               "tariff_id": tariff.tariff_id, "tariff_version": tariff.version, "periods": periods,
               "amount_fen": tariff.amount_fen(periods), "stop_reason": reason[:36] or "Local", "ocmf": t.ocmf}
        tx = ocppbill.bill_tx(self.key, doc)
        with self.chain.lock:
            ex = self.chain.state.execute([tx], max(now * 1000, self.chain.state.last_time_ms + 1))
        if ex.refused:
            refusal = ex.refused[0]
            if refusal.reason == "session_billed":
                return BillOutcome(None, True)
            log.warning("OCPP bill of %s transaction %s refused: %s: %s", t.charger_id, t.transaction_id,
                        refusal.reason, refusal.detail, extra={"event": "ocpp_bill_refused"})
            return BillOutcome(None, False, refusal.reason, refusal.detail)
        with self.lock:
            self.bills[tx_hash(tx)] = (t.charger_id, t.transaction_id)
        return BillOutcome(tx, False)

    def _on_commit(self, block, ex) -> None:
        """A committed bill ends its transaction here, whichever bureau built it."""
        billed = [e for e in ex.effects if e.kind == "ocpp_bill"]
        if billed:
            with self.lock:
                for e in billed:
                    self.bills.pop(e.tx_hash, None)
                    self.transactions.pop((e.charger_id, e.detail["transaction_id"]), None)
            if self.store is not None:
                self.store.drop([(e.charger_id, e.detail["transaction_id"]) for e in billed])
