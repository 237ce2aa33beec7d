"""The deterministic ledger state machine.

`LedgerState.execute(txs, block_time_ms)` runs a block's transactions against the current state
without changing it and returns what they would do (`Execution`): effects per accepted
transaction, the refused ones with their reasons, and the new state root. `apply(execution)`
makes it current. Every bureau node runs the same code over the same blocks, so all reach the
same state root.

An operator action that is signed, fresh and new but cannot take effect (a top-up of a wallet not
yet opened, a payment reference already credited) is still written into the block, as a final
refusal: its hash is remembered with the committed ones, so the same signed bytes can never
commit later at any node. Hashes are forgotten once the action's time window has passed
(`ACTION_MAX_AGE_S`), after which the window alone refuses it.

State root v2: the root of the state map (ledger/statemap.py, docs/state.md) after the block, one
record per entity (ledger/records.py). A transaction marks the entities it changes (`ex.dirty`);
the end of `execute` builds each marked entity's record once from its whole state. History
(committed receipt ids, billed sessions, decided actions) is checked here but is not in the map:
the blocks' transactions prove it.

Memory is O(chargers + wallets + open work), not O(receipts): a per-charger seq window in memory
decides whether a seq is new, and refuses one at or below its floor (`seq_too_old`); receipt ids
and billed sessions are asked of an injected `History` (storage at a node, ledger/history.py).
Receipts older than `MAX_RECEIPT_AGE_S` are refused (`too_old`), so one-bill-per-session needs
only the bills of blocks since `billed_horizon_ms`: what a snapshot's history carries is bounded
by the chargers and that window, not by the chain's age.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import NamedTuple

from .. import crypto
from ..receipts.codec import ReceiptError, decode as decode_receipt, receipt_id, signed_message
from . import ocmf, ocppbill, records
from .genesis import Genesis
from .history import History, MemoryHistory, SeqWindows
from .statemap import StateMap
from .tariff import Tariff, TariffError
from . import evidence as evidence_tx, valset
from .tx import (ACTION_MAX_AGE_S, ACTION_MAX_SKEW_S, ID_RE, KIND_DRIVER, KIND_EVIDENCE, KIND_OPERATOR, KIND_RECEIPT,
                 MAX_ACTION_TIME, MAX_BINDING_S, MAX_TX, DriverTx, decode_driver,
                 PAYMENT_REF_RE, TxError, action_time_error, decode_operator, signed_operator_message, tx_hash)
from ..ocpi import site
from ..ocpp.password import DIGEST_RE

MAX_TOP_UP_FEN = 10**10
MAX_TARIFF_VERSION = 2**32 - 1  # the u32 a receipt names it with
# A decided action's hash must outlive every block time in which the action could still commit:
# its time is at most the recording block's time + skew, and it expires max-age after that
# (+ 1 s as block times are compared in whole seconds).
DECIDED_KEPT_MS = (ACTION_MAX_AGE_S + ACTION_MAX_SKEW_S + 1) * 1000
# How far a receipt's end time may lie past the block time (or, at admission, the node's clock):
# charger clocks are NTP-synced but drift between syncs.
CLOCK_ALLOWANCE_S = 300
# How far a receipt's (or an OCPP bill's) end time may lie before the block time: a charger
# offline for weeks still delivers its receipts, and a receipt older than this is set aside on
# the charger for a technician (docs/ledger.md, Applying a receipt). It bounds the history the rules
# need: a session counts as billed while the block that billed it is within BILLED_KEPT_S.
MAX_RECEIPT_AGE_S = 30 * 86400
# A bill's end time is at most its block's time + the allowance, so every bill of a session that
# a later block could still accept committed at or after that block's time - this.
BILLED_KEPT_S = MAX_RECEIPT_AGE_S + CLOCK_ALLOWANCE_S
REASON_RE = re.compile(r"[\x20-\x7e]{1,200}\Z")  # why an operator refunded, adjusted or blocked: shown as given
METER_REPLACED = 0x08  # meter_status bit 3 (docs/receipt-v1.md): the firmware saw another meter


def billed_horizon_ms(block_time_ms: int) -> int:
    """The earliest block time (ms) whose bills still count for `session_billed` in a block of
    `block_time_ms`; in whole seconds, as the rules read block times."""
    return (block_time_ms // 1000 - BILLED_KEPT_S) * 1000


@dataclass(frozen=True)
class MeterMark:
    """The readings of the highest-seq committed receipt of one charger's meter."""
    seq: int
    start_wh: int
    end_wh: int


@dataclass(frozen=True)
class OcppCharger:
    """An OCPP charge point's enrollment (enroll_ocpp_charger, docs/ocpp.md)."""
    ocpp_version: str
    password_digest: str
    ocmf_key: str | None  # hex DER SubjectPublicKeyInfo of its meter's P-256 key
    location: dict | None = None  # where it stands (ocpi/site.py), for OCPI CDRs


@dataclass
class Wallet:
    public_key: bytes | None  # the phone's key; None until a phone is bound (bind_phone)
    balance: int


@dataclass(frozen=True)
class Effect:
    """What one accepted transaction did; storage indexes these for history and proofs."""
    tx_hash: bytes
    kind: str  # receipt | refused_action | an action of tx.ACTIONS
    wallet_id: str | None = None
    delta_fen: int = 0
    balance_after: int | None = None
    charger_id: str | None = None
    seq: int | None = None
    receipt_id: str | None = None
    energy_wh: int = 0
    detail: dict | None = None
    auth_ref: str | None = None  # a receipt's: the hold it settles (released in the block's commit)


@dataclass(frozen=True)
class Refusal:
    tx: bytes
    reason: str
    detail: str
    charger_id: str | None = None
    seq: int | None = None


class Snapshot(NamedTuple):
    """The state map after block `height`, read as one value (no lock) by the API."""
    height: int
    state_map: StateMap


@dataclass
class Execution:
    txs: list[bytes]
    effects: list[Effect]
    refused: list[Refusal]
    state_map: StateMap = field(default_factory=StateMap)  # after the block
    dirty: set[tuple] = field(default_factory=set)  # entity marks (records.key) whose record the block changes
    wallets: dict[str, Wallet] = field(default_factory=dict)
    chargers: dict[str, bytes] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)  # chargers retired in the block
    charger_rekeys: dict[str, bytes] = field(default_factory=dict)  # new keys, in effect from the next block
    operator_rekeys: dict[str, bytes] = field(default_factory=dict)  # likewise
    cards: dict[str, str | None] = field(default_factory=dict)  # card uid -> wallet; None: unbound in the block
    card_blocks: dict[str, bool] = field(default_factory=dict)  # card uid -> blocked, as the block leaves it
    tariffs: dict[tuple[str, int], Tariff] = field(default_factory=dict)
    tariff_from: dict[tuple[str, int], int] = field(default_factory=dict)  # (id, version) -> effective_from
    receipts: dict[tuple[str, int], str] = field(default_factory=dict)
    seq_high: dict[str, int] = field(default_factory=dict)  # charger -> highest seq the block commits
    sessions: set[tuple[str, bytes]] = field(default_factory=set)  # (charger, session id) billed in the block
    # those of the block's sessions that earlier blocks billed: one history lookup per block
    billed_before: set[tuple[str, bytes]] = field(default_factory=set)
    meters: dict[tuple[str, str], MeterMark] = field(default_factory=dict)  # (charger, meter serial) -> new mark
    operator_txs: set[bytes] = field(default_factory=set)  # decided here: committed or refused in the block
    payments: dict[str, str] = field(default_factory=dict)  # payment reference -> wallet id
    bindings: dict[str, tuple[bytes, int] | None] = field(default_factory=dict)  # wallet -> (key, expires); None: used
    ocpp_chargers: dict[str, OcppCharger] = field(default_factory=dict)  # enrolled in the block
    ocpp_passwords: dict[str, str] = field(default_factory=dict)  # charge point -> its new password digest
    ocpp_bills: set[tuple[str, str]] = field(default_factory=set)  # (charge point, transaction id) billed
    epoch: valset.Epoch | None = None  # the validator set a change_validators of the block decided
    evidence: dict[tuple, tuple[bytes, bytes]] = field(default_factory=dict)  # new equivocations, as self.evidence
    time_ms: int = 0

    @property
    def state_root(self) -> bytes:
        return self.state_map.root


class LedgerState:
    """Chargers, wallets, cards, tariffs, each charger's seq window, credited payment references
    and the operator actions decided within their window, held in memory.

    Balances are read in O(1); storage persists the same data and rebuilds this at start. The ids
    of committed seqs and the billed sessions are asked of `history` (default: kept in memory, for
    a state without storage; `Repository.load_state` puts its own in).
    """

    def __init__(self, genesis: Genesis, history: History | None = None) -> None:
        self.genesis = genesis
        self.history: History = MemoryHistory() if history is None else history
        self.operators = dict(genesis.operators)
        self.chargers: dict[str, bytes] = {}  # every charger ever enrolled, retired ones too (their
        # receipts on chain stay verifiable)
        self.retired: set[str] = set()  # chargers whose receipts and logins end for good
        # keys replaced by a rotation, oldest first, each with the last height it was in effect:
        # committed receipts stay verifiable, and a signature by one is refused with its reason
        self.charger_old_keys: dict[str, list[tuple[int, bytes]]] = {}
        self.operator_old_keys: dict[str, list[tuple[int, bytes]]] = {}
        self.wallets: dict[str, Wallet] = {}
        self.cards: dict[str, str] = {}
        self.blocked_cards: set[str] = set()  # bound cards refused at authorization and left off the offline list
        self.tariffs: dict[tuple[str, int], Tariff] = {(t.tariff_id, t.version): t for t in genesis.tariffs}
        # (id, version) -> effective_from (unix s): genesis tariffs are in force from 0
        self.tariff_from: dict[tuple[str, int], int] = dict.fromkeys(self.tariffs, 0)
        self.seq_windows = SeqWindows()  # per charger: which recent seqs are committed
        self.meters: dict[tuple[str, str], MeterMark] = {}  # (charger, meter serial) -> its latest readings
        # hash -> time (ms) of the block that decided it; pruned as the window passes
        self.operator_txs: dict[bytes, int] = {}
        self.payments: dict[str, str] = {}
        self.bindings: dict[str, tuple[bytes, int]] = {}  # wallet -> (binding key, expires unix s), unused codes
        self.ocpp_chargers: dict[str, OcppCharger] = {}
        # (charge point, transaction id) of the OCPP bills since the billing horizon -> their block's
        # time (ms); older ones are forgotten (`forget_billed_before`)
        self.ocpp_bills: dict[tuple[str, str], int] = {}
        # the validator sets decided so far (the genesis set first) and when each is in force
        self.schedule = valset.Schedule.genesis(genesis.validators)
        # (validator id, height, round, step) of every recorded equivocation -> its two block ids
        self.evidence: dict[tuple, tuple[bytes, bytes]] = {}
        self.height = 0
        self.last_hash = genesis.hash
        self.last_time_ms = genesis.time_ms
        self.snapshot = Snapshot(0, StateMap())
        self.rebuild_map()  # the genesis state: its operators and tariffs

    @property
    def state_map(self) -> StateMap:
        return self.snapshot.state_map

    @property
    def state_root(self) -> bytes:
        return self.snapshot.state_map.root

    # ---- the state map -------------------------------------------------------------------

    def _marks(self):
        """The mark of every entity that has a record."""
        yield from (("o", o) for o in self.operators)
        yield from (("c", c) for c in self.chargers)
        yield from (("w", w) for w in self.wallets)
        yield from (("k", k) for k in self.cards)
        yield from (("t", tid, v) for tid, v in self.tariffs)
        yield from (("m", c, m) for c, m in self.meters)
        yield from (("p", p) for p in self.payments)
        yield from (("b", w) for w in self.bindings)
        yield from (("q", c) for c in self.ocpp_chargers)
        yield ("v", "set")
        yield from (("e", *slot) for slot in self.evidence)

    def _record(self, mark: tuple, ex: Execution) -> str | None:
        """The record of entity `mark` as the state holds it after `ex`; None when it has none."""
        kind, ident = mark[0], mark[1:]
        if kind == "o":
            return records.operator(ex.operator_rekeys.get(ident[0]) or self.operators[ident[0]])
        if kind == "c":
            c = ident[0]
            key = ex.charger_rekeys.get(c) or ex.chargers.get(c) or self.chargers.get(c)
            return records.charger(key, c in self.retired or c in ex.retired)
        if kind == "w":
            w = ex.wallets.get(ident[0]) or self.wallets.get(ident[0])
            return None if w is None else records.wallet(w.balance, w.public_key)
        if kind == "k":
            wallet_id = self._card_wallet(ident[0], ex)
            return None if wallet_id is None else records.card(wallet_id, self.card_blocked(ident[0], ex))
        if kind == "t":
            t = ex.tariffs.get(ident) or self.tariffs.get(ident)
            since = ex.tariff_from.get(ident, self.tariff_from.get(ident))
            return None if t is None else records.tariff(t, since)
        if kind == "m":
            mark_ = ex.meters.get(ident) or self.meters.get(ident)
            return None if mark_ is None else records.meter(mark_.seq, mark_.start_wh, mark_.end_wh)
        if kind == "p":
            wallet_id = ex.payments.get(ident[0]) or self.payments.get(ident[0])
            return None if wallet_id is None else records.payment(wallet_id)
        if kind == "b":
            binding = ex.bindings[ident[0]] if ident[0] in ex.bindings else self.bindings.get(ident[0])
            return None if binding is None else records.binding(*binding)
        if kind == "q":
            cp = self.ocpp_charger(ident[0], ex)
            return records.ocpp_charger(cp.ocpp_version, cp.password_digest, cp.ocmf_key, cp.location)
        if kind == "v":
            return (ex.epoch or self.schedule.latest).record()
        if kind == "e":
            return records.evidence(*(ex.evidence.get(ident) or self.evidence[ident]))
        raise ValueError(f"no record kind {kind!r}")

    def rebuild_map(self) -> None:
        """The map from every entity the state holds (at genesis, and after storage loaded it)."""
        none = Execution(txs=[], effects=[], refused=[])
        full = StateMap().update({records.key(m): self._record(m, none) for m in self._marks()})
        self.snapshot = Snapshot(self.height, full)

    # ---- reading -------------------------------------------------------------------------

    def active_charger(self, charger_id: str) -> bytes | None:
        """The key of an enrolled charger that is not retired."""
        return None if charger_id in self.retired else self.chargers.get(charger_id)

    def active_chargers(self) -> list[str]:
        return sorted(c for c in self.chargers if c not in self.retired)

    def charger_key_at(self, charger_id: str, height: int) -> bytes | None:
        """The key a receipt of `charger_id` committed in block `height` was verified with."""
        for until, key in self.charger_old_keys.get(charger_id, ()):
            if height <= until:
                return key
        return self.chargers.get(charger_id)

    def rotated_key_error(self, old_keys: dict[str, list[tuple[int, bytes]]], who: str, message: bytes,
                          signature: bytes) -> TxError | None:
        """`key_rotated` when `signature` verifies with a key `who` had before a rotation."""
        for until, key in old_keys.get(who, ()):
            if crypto.verify(key, message, signature):
                return TxError("key_rotated", f"signed with the key {who} had until block {until}; "
                                              f"it was replaced from block {until + 1} on")
        return None

    def seq_error(self, charger_id: str, seq: int, rid: str, ex: Execution | None = None) -> ReceiptError | None:
        """Why receipt `rid` may not take seq `seq` of `charger_id` on the committed state (and the
        block `ex` being run): `seq_too_old` at or below the charger's highest seq minus
        SEQ_WINDOW, `duplicate` when this receipt is committed, `seq_reused` when another is;
        None for a new seq. Decided by the seq window; only a committed seq reads an id."""
        high = self.seq_windows.high(charger_id)
        in_block = ex.seq_high.get(charger_id) if ex is not None else None
        if in_block is not None and (high is None or in_block > high):
            high = in_block
        if high is not None and seq <= high - self.seq_windows.width:
            return ReceiptError("seq_too_old", f"seq {seq} of {charger_id} is more than {self.seq_windows.width} "
                                               f"below its highest committed seq {high}")
        seen = ex.receipts.get((charger_id, seq)) if ex is not None else None
        if seen is None and self.seq_windows.committed(charger_id, seq):
            # None: a joined node holds no id of a receipt committed before the billing horizon,
            # and this one, not too old, is younger: another receipt (docs/ledger.md, Memory)
            seen = self.history.receipt_id(charger_id, seq) or ""
        if seen is None:
            return None
        if seen == rid:
            return ReceiptError("duplicate", f"receipt {charger_id}#{seq} is already committed")
        return ReceiptError("seq_reused", f"seq {seq} of {charger_id} is already used by another receipt")

    @staticmethod
    def time_error(end_time: int, now_s: int) -> ReceiptError | None:
        """`from_future` or `too_old`: the end time of a receipt or OCPP bill against block time `now_s`."""
        if end_time > now_s + CLOCK_ALLOWANCE_S:
            return ReceiptError("from_future", f"end_time {end_time} is more than {CLOCK_ALLOWANCE_S} s "
                                               f"after the block time {now_s}")
        if end_time < now_s - MAX_RECEIPT_AGE_S:
            return ReceiptError("too_old", f"end_time {end_time} is more than {MAX_RECEIPT_AGE_S} s "
                                           f"before the block time {now_s}")
        return None

    def billing_error(self, r, tariff: Tariff | None, now_s: int, ex: Execution | None = None) -> ReceiptError | None:
        """The first billing rule of docs/ledger.md that receipt `r` breaks against the committed
        state (and the block `ex` being run), with `now_s` the block time; None when it breaks
        none. The period rule is checked only with the receipt's `tariff`. `session_billed` is
        checked only in a block (`ex`): admission leaves it to the block's one batched lookup, and
        the proposer's refusal answers the charger."""
        if ex is not None and ((r.charger_id, r.session_id) in ex.sessions
                               or (r.charger_id, r.session_id) in ex.billed_before):
            return ReceiptError("session_billed", f"session {r.session_id.hex()} of {r.charger_id} is already billed")
        late = self.time_error(r.end_time, now_s)
        if late is not None:
            return late
        mark = (ex.meters.get((r.charger_id, r.meter_serial)) if ex is not None else None) \
            or self.meters.get((r.charger_id, r.meter_serial))
        if mark is not None and not r.meter_status & METER_REPLACED:
            # receipts of one meter may commit out of seq order: each must fit around the latest
            if r.seq > mark.seq and r.meter_start_wh < mark.end_wh:
                return ReceiptError("meter_rollback", f"meter {r.meter_serial} starts at {r.meter_start_wh} Wh, below "
                                                      f"the end reading {mark.end_wh} Wh of seq {mark.seq}")
            if r.seq < mark.seq and r.meter_end_wh > mark.start_wh:
                return ReceiptError("meter_rollback", f"meter {r.meter_serial} ends at {r.meter_end_wh} Wh, above "
                                                      f"the begin reading {mark.start_wh} Wh of seq {mark.seq}")
        if tariff is not None:
            in_force = self.tariff_in_force(r.tariff_id, r.start_time, ex)
            if in_force is None or in_force.version != r.tariff_version:
                now_in = f"v{in_force.version} was" if in_force is not None else "no version was"
                return ReceiptError("tariff_not_in_force", f"the session started at {r.start_time}, when {now_in} "
                                                           f"in force, not {r.tariff_id} v{r.tariff_version}")
            touched = tariff.kinds_between(r.start_time, r.end_time)
            stray = [k for k, wh in r.periods if wh and k not in touched]
            if stray:
                return ReceiptError("period_mismatch", f"energy in period kind {stray[0]}, which the tariff "
                                                       f"{r.tariff_id} v{r.tariff_version} does not have "
                                                       f"between {r.start_time} and {r.end_time}")
        return None

    def latest_tariff(self, tariff_id: str) -> Tariff | None:
        versions = [v for (tid, v) in self.tariffs if tid == tariff_id]
        return self.tariffs[(tariff_id, max(versions))] if versions else None

    def tariff_versions(self, tariff_id: str) -> list[tuple[int, int]]:
        """(version, effective_from) of every published version of `tariff_id`, ascending."""
        return sorted((v, self.tariff_from[(tid, v)]) for (tid, v) in self.tariffs if tid == tariff_id)

    def tariff_in_force(self, tariff_id: str, at_s: int, ex: Execution | None = None) -> Tariff | None:
        """The version of `tariff_id` in force at `at_s`: the greatest effective_from <= at_s (versions
        and their effective times ascend together, `_op_publish_tariff`)."""
        best = None
        for source in (self.tariff_from, ex.tariff_from if ex is not None else {}):
            for (tid, v), since in source.items():
                if tid == tariff_id and since <= at_s and (best is None or (since, v) > best):
                    best = (since, v)
        if best is None:
            return None
        ident = (tariff_id, best[1])
        return self.tariffs.get(ident) or ex.tariffs[ident]

    def next_tariff(self, tariff_id: str, at_s: int) -> tuple[Tariff, int] | None:
        """The first version of `tariff_id` that comes in force after `at_s`, with its time."""
        later = [(since, v) for (tid, v), since in self.tariff_from.items() if tid == tariff_id and since > at_s]
        if not later:
            return None
        since, v = min(later)
        return self.tariffs[(tariff_id, v)], since

    # ---- executing a block ---------------------------------------------------------------

    def execute(self, txs: list[bytes], block_time_ms: int,
                verified: Mapping[bytes, tuple | None] | frozenset[bytes] | set[bytes] = frozenset(),
                receipt_keys: Mapping[bytes, bytes] = MappingProxyType({}),
                decoded: Mapping[bytes, tuple] = MappingProxyType({})) -> Execution:
        """Run `txs` in order on top of the current state, without changing it, as a block of
        time `block_time_ms` (UTC ms; operator actions are checked against it).

        `verified` holds tx hashes whose signatures this node has already checked at ingest, so
        the proposer does not check them twice; a node validating someone else's block passes
        those of its transactions it admitted itself, an audit nothing. As a mapping, a receipt's
        hash may map to admission's (receipt, body, signature), so it is not decoded again. `receipt_keys` maps receipt tx hashes to the charger
        key their signature was checked with (the audit's workers): one whose key is the key in
        effect here is not checked again, rotated or not. `decoded` maps receipt tx hashes to
        their (receipt, body, signature) as `receipts.codec.decode` gave them (the audit's
        workers), trusted for nothing but the decoding.
        """
        ex = Execution(txs=[], effects=[], refused=[], time_ms=block_time_ms)
        sessions = {s for s in map(_receipt_session, txs) if s is not None}
        ex.billed_before = self.history.billed_sessions(sessions, billed_horizon_ms(block_time_ms)) \
            if sessions else set()
        for tx in txs:
            try:
                effect = self._execute_one(tx, ex, verified, receipt_keys, decoded)
            except (TxError, ReceiptError) as e:
                charger, seq = receipt_ids(tx)
                ex.refused.append(Refusal(tx, e.reason, e.detail, charger, seq))
                continue
            ex.txs.append(tx)
            ex.effects.append(effect)
        ex.state_map = self.state_map.update({records.key(m): self._record(m, ex) for m in ex.dirty})
        return ex

    def apply(self, ex: Execution, height: int, block_hash: bytes, time_ms: int) -> None:
        self.wallets.update(ex.wallets)
        self.chargers.update(ex.chargers)
        self.retired.update(ex.retired)
        for charger_id, key in ex.charger_rekeys.items():
            self.charger_old_keys.setdefault(charger_id, []).append((height, self.chargers[charger_id]))
            self.chargers[charger_id] = key
        for operator_id, key in ex.operator_rekeys.items():
            self.operator_old_keys.setdefault(operator_id, []).append((height, self.operators[operator_id]))
            self.operators[operator_id] = key
        for card, wallet_id in ex.cards.items():
            if wallet_id is None:
                self.cards.pop(card, None)
            else:
                self.cards[card] = wallet_id
        for card, blocked in ex.card_blocks.items():
            if blocked:
                self.blocked_cards.add(card)
            else:
                self.blocked_cards.discard(card)
        self.tariffs.update(ex.tariffs)
        self.tariff_from.update(ex.tariff_from)
        for charger_id, seq in ex.receipts:
            self.seq_windows.add(charger_id, seq)
        self.history.record(ex.receipts, ex.sessions, time_ms)
        self.meters.update(ex.meters)
        self.payments.update(ex.payments)
        for wallet_id, binding in ex.bindings.items():
            if binding is None:
                self.bindings.pop(wallet_id, None)
            else:
                self.bindings[wallet_id] = binding
        self.ocpp_chargers.update(ex.ocpp_chargers)
        for charger_id, digest in ex.ocpp_passwords.items():
            self.ocpp_chargers[charger_id] = replace(self.ocpp_chargers[charger_id], password_digest=digest)
        self.ocpp_bills.update(dict.fromkeys(ex.ocpp_bills, time_ms))
        self.operator_txs.update(dict.fromkeys(ex.operator_txs, time_ms))
        self.forget_decided_before(time_ms)
        self.forget_billed_before(time_ms)
        self.evidence.update(ex.evidence)
        if ex.epoch is not None:
            self.schedule.add(ex.epoch)
        self.snapshot = Snapshot(height, ex.state_map)
        self.height = height
        self.last_hash = block_hash
        self.last_time_ms = time_ms

    def forget_decided_before(self, time_ms: int) -> None:
        """Drop the hashes of actions that a block of `time_ms` or later refuses by time alone."""
        horizon = time_ms - DECIDED_KEPT_MS
        if any(t < horizon for t in self.operator_txs.values()):
            self.operator_txs = {h: t for h, t in self.operator_txs.items() if t >= horizon}

    def forget_billed_before(self, time_ms: int) -> None:
        """Drop the OCPP bills that no block of `time_ms` or later counts (`billed_horizon_ms`)."""
        horizon = billed_horizon_ms(time_ms)
        if any(t < horizon for t in self.ocpp_bills.values()):
            self.ocpp_bills = {b: t for b, t in self.ocpp_bills.items() if t >= horizon}

    def _card_wallet(self, card: str, ex: Execution) -> str | None:
        """The wallet `card` is bound to, with the block `ex` so far."""
        return ex.cards[card] if card in ex.cards else self.cards.get(card)

    def card_blocked(self, card: str, ex: Execution | None = None) -> bool:
        if ex is not None and card in ex.card_blocks:
            return ex.card_blocks[card]
        return card in self.blocked_cards

    def _wallet(self, ex: Execution, wallet_id: str) -> Wallet | None:
        w = ex.wallets.get(wallet_id)
        if w is None:
            base = self.wallets.get(wallet_id)
            if base is None:
                return None
            w = ex.wallets[wallet_id] = Wallet(base.public_key, base.balance)
        return w

    def _execute_one(self, tx: bytes, ex: Execution, verified, receipt_keys, decoded) -> Effect:
        if not tx or len(tx) > MAX_TX:
            raise TxError("malformed", "empty or oversized transaction")
        h = tx_hash(tx)
        if tx[0] == KIND_RECEIPT:
            return self._receipt(tx, h, ex, verified, receipt_keys, decoded)
        if tx[0] == KIND_OPERATOR:
            return self._operator(tx, h, ex, verified)
        if tx[0] == KIND_DRIVER:
            return self._driver(tx, h, ex, verified)
        if tx[0] == ocppbill.KIND_OCPP_BILL:
            return self._ocpp_bill(tx, h, ex, verified)
        if tx[0] == KIND_EVIDENCE:
            return self._evidence(tx, h, ex)
        raise TxError("malformed", f"unknown transaction kind {tx[0]}")

    def _receipt(self, tx: bytes, h: bytes, ex: Execution, verified, receipt_keys, decoded) -> Effect:
        envelope = tx[1:]
        parsed = decoded.get(h) or (verified.get(h) if isinstance(verified, Mapping) else None)
        r, body, sig = parsed if parsed is not None else decode_receipt(envelope)
        key = ex.chargers.get(r.charger_id) or self.chargers.get(r.charger_id)
        if key is None:
            raise ReceiptError("unknown_charger", f"charger {r.charger_id} is not enrolled")
        if r.charger_id in self.retired or r.charger_id in ex.retired:
            raise ReceiptError("charger_retired", f"charger {r.charger_id} is retired")
        # A signature checked at ingest may have been checked with a key rotated away since.
        checked = receipt_keys.get(h) == key or (h in verified and r.charger_id not in self.charger_old_keys)
        if not checked and not crypto.verify(key, signed_message(body), sig):
            rotated = self.rotated_key_error(self.charger_old_keys, r.charger_id, signed_message(body), sig)
            if rotated is not None:
                raise ReceiptError(rotated.reason, rotated.detail)
            raise ReceiptError("bad_signature", "signature does not verify with the enrolled key")
        ident = (r.charger_id, r.seq)
        rid = receipt_id(envelope)
        # time first: the seq's answer for a receipt past the staleness bound would need its id
        refused = self.time_error(r.end_time, ex.time_ms // 1000) or self.seq_error(r.charger_id, r.seq, rid, ex)
        if refused is not None:
            raise refused
        tariff = ex.tariffs.get((r.tariff_id, r.tariff_version)) or self.tariffs.get((r.tariff_id, r.tariff_version))
        if tariff is None:
            raise ReceiptError("unknown_tariff", f"tariff {r.tariff_id} v{r.tariff_version} is not published")
        refused = self.billing_error(r, tariff, ex.time_ms // 1000, ex)
        if refused is not None:
            raise refused
        try:
            expected = tariff.amount_fen(r.periods)
        except TariffError as e:
            raise ReceiptError("wrong_amount", str(e)) from None
        if expected != r.amount_fen:
            raise ReceiptError("wrong_amount", f"amount {r.amount_fen} fen, the tariff gives {expected}")
        wallet = self._wallet(ex, r.wallet_id)
        if wallet is None:
            raise ReceiptError("unknown_wallet", f"wallet {r.wallet_id} does not exist")
        # The energy was delivered: the bill stands even if it takes the wallet below zero.
        wallet.balance -= r.amount_fen
        ex.receipts[ident] = rid
        ex.seq_high[r.charger_id] = max(r.seq, ex.seq_high.get(r.charger_id, r.seq))
        ex.sessions.add((r.charger_id, r.session_id))
        meter = (r.charger_id, r.meter_serial)
        mark = ex.meters.get(meter) or self.meters.get(meter)
        if mark is None or r.seq > mark.seq:
            ex.meters[meter] = MeterMark(r.seq, r.meter_start_wh, r.meter_end_wh)
            ex.dirty.add(("m", *meter))
        ex.dirty.add(("w", r.wallet_id))
        return Effect(h, "receipt", r.wallet_id, -r.amount_fen, wallet.balance, r.charger_id, r.seq, rid,
                      r.energy_wh, auth_ref=r.auth_ref)

    def _operator(self, tx: bytes, h: bytes, ex: Execution, verified) -> Effect:
        op = decode_operator(tx)
        key = self.operators.get(op.operator)
        if key is None:
            raise TxError("unknown_operator", f"operator {op.operator} is not in the genesis")
        if (h not in verified or op.operator in self.operator_old_keys) \
                and not crypto.verify(key, signed_operator_message(op), op.signature):
            rotated = self.rotated_key_error(self.operator_old_keys, op.operator, signed_operator_message(op),
                                             op.signature)
            raise rotated or TxError("bad_signature", "operator signature does not verify")
        if h in self.operator_txs or h in ex.operator_txs:
            raise TxError("duplicate", "this operator action is already decided (committed or refused)")
        block_time_s = ex.time_ms // 1000
        late = action_time_error(op.time, block_time_s)
        if late is not None and late.reason == "expired":
            raise late  # refused by time alone, now and at every later block: nothing to record
        # From here on the decision is final: the action goes into the block, committed or refused.
        ex.operator_txs.add(h)
        try:
            if late is not None:
                raise late
            return self._run_action(op, h, ex)
        except TxError as e:
            return Effect(h, "refused_action", detail={"action": op.action, "reason": e.reason, "detail": e.detail})

    def driver_error(self, d: DriverTx, h: bytes, now_s: int, ex: Execution | None = None,
                     check_signature: bool = True) -> TxError | None:
        """Why driver transaction `d` (hash `h`) may not commit at `now_s` on the committed state
        and the block `ex` being run; None when it may. Admission asks the same question."""
        if d.doc["genesis"] != self.genesis.hash.hex():
            return TxError("wrong_chain", "the transaction names another chain's genesis")
        late = action_time_error(d.time, now_s)
        if late is not None:
            return late
        if h in self.operator_txs or (ex is not None and h in ex.operator_txs):
            return TxError("duplicate", "this transaction is already committed")
        wallet_id = d.wallet_id
        if ex is not None and wallet_id in ex.bindings:
            binding = ex.bindings[wallet_id]
        else:
            binding = self.bindings.get(wallet_id)
        if binding is None:
            return TxError("no_binding_code", f"wallet {wallet_id} has no unused binding code; ask the operator "
                                              f"for a new one")
        key, expires = binding
        if check_signature and not crypto.verify(key, d.signed_message(), d.signature):
            return TxError("bad_signature", "not signed with the key of the wallet's binding code (a mistyped "
                                            "code, or another wallet's)")
        if expires <= now_s:  # valid before its expiry second, like an offline list
            return TxError("binding_expired", f"the binding code expired at {expires}; ask the operator for a new one")
        return None

    def _driver(self, tx: bytes, h: bytes, ex: Execution, verified) -> Effect:
        d = decode_driver(tx)
        refused = self.driver_error(d, h, ex.time_ms // 1000, ex, check_signature=h not in verified)
        if refused is not None:
            raise refused
        wallet = self._wallet(ex, d.wallet_id)
        if wallet is None:  # a binding is issued only on an open wallet, and wallets are never closed
            raise TxError("unknown_wallet", f"wallet {d.wallet_id} does not exist")
        wallet.public_key = d.public_key
        ex.bindings[d.wallet_id] = None  # the code is used once
        ex.operator_txs.add(h)  # decided: a replay is refused duplicate
        ex.dirty.update({("w", d.wallet_id), ("b", d.wallet_id)})
        return Effect(h, "bind_phone", d.wallet_id, detail={"public_key": d.public_key.hex()})

    def _run_action(self, op, h: bytes, ex: Execution) -> Effect:
        """The action's own effect; on TxError, `ex` must be as it was (checks come before changes)."""
        try:
            if op.action == "rotate_operator_key":  # the one action about its own signer
                return self._op_rotate_operator_key(op.operator, op.args, h, ex)
            return getattr(self, "_op_" + op.action)(op.args, h, ex)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            if isinstance(e, (TxError, ReceiptError)):
                raise
            raise TxError("malformed", f"bad arguments for {op.action}: {e}") from None

    def validators_at(self, height: int):
        """The validator set in force at block `height` (known up to the head + EFFECT_DELAY)."""
        return self.schedule.at(height)

    def evidence_slot(self, tx: bytes, ex: Execution | None = None) -> tuple:
        """(validator id, height, round, step) of the equivocation evidence `tx` proves, if the
        next block may record it (on the committed state and the block `ex` being run); TxError
        otherwise. Admission asks the same of evidence a peer relays."""
        a, b = evidence_tx.decode(tx)
        height = self.height + 1
        if a.height > height:
            raise TxError("evidence_too_new", f"votes of height {a.height} are after the block's height {height}")
        validators = self.schedule.at(a.height)
        if a.validator >= len(validators):
            raise TxError("unknown_validator", f"no validator {a.validator} in the set in force at {a.height}")
        v = validators[a.validator]
        if not evidence_tx.signed_by(self.genesis.chain_id, v.public_key, a, b):
            raise TxError("bad_signature", f"the votes are not both signed by {v.id}")
        slot = (v.id, a.height, a.round, int(a.kind))
        if slot in self.evidence or (ex is not None and slot in ex.evidence):
            raise TxError("evidence_recorded", f"an equivocation of {v.id} at height {a.height} round {a.round} "
                                               f"is already recorded")
        return slot

    def _evidence(self, tx: bytes, h: bytes, ex: Execution) -> Effect:
        """Two conflicting signed votes of one validator (ledger/evidence.py): recorded once per
        (validator, height, round, step) as an `e/` record; anyone may submit it."""
        slot = self.evidence_slot(tx, ex)
        a, b = evidence_tx.decode(tx)
        v = self.schedule.at(a.height)[a.validator]
        ex.evidence[slot] = (a.block_hash, b.block_hash)
        ex.dirty.add(("e", *slot))
        return Effect(h, "evidence", detail={"validator": v.id, "height": a.height, "round": a.round,
                                             "step": int(a.kind), "block_ids": [a.block_hash.hex(), b.block_hash.hex()]})

    def _op_change_validators(self, args, h, ex) -> Effect:
        if set(args) != {"change", "approvals"}:
            raise TxError("malformed", "change_validators takes change and approvals")
        height = self.height + 1
        latest = ex.epoch or self.schedule.latest
        if ex.epoch is not None or latest.from_height > height:
            raise TxError("change_pending", f"validator set {latest.seq} comes in force at height "
                                            f"{latest.from_height}; propose the next change after that")
        change = args["change"]
        new = valset.apply_change(latest.validators, change)
        if type(change["seq"]) is not int or change["seq"] != latest.seq:
            raise TxError("wrong_seq", f"the change replaces set {change['seq']!r}; the set in force is {latest.seq}")
        power = valset.approval_power(latest.validators, self.genesis.chain_id, change, args["approvals"])
        if not latest.validators.has_quorum(power):
            raise TxError("insufficient_approval", f"approvals carry {power} of {latest.validators.total_power} "
                                                   "voting power, not more than 2/3")
        ex.epoch = valset.Epoch(latest.seq + 1, height + valset.EFFECT_DELAY, new)
        ex.dirty.add(("v", "set"))
        return Effect(h, "change_validators", detail={"seq": ex.epoch.seq, "from_height": ex.epoch.from_height,
                                                      "validators": valset.validators_doc(new)})

    def _op_enroll_charger(self, args, h, ex) -> Effect:
        charger_id, key = args["charger_id"], bytes.fromhex(args["public_key"])
        if not ID_RE.match(charger_id) or len(key) != 32:
            raise TxError("malformed", "enroll_charger needs a charger id and a 32-byte public key")
        if charger_id in self.retired or charger_id in ex.retired:
            raise TxError("charger_retired", f"charger {charger_id} is retired; its id is never enrolled again")
        if self._charger_id_taken(charger_id, ex):
            raise TxError("charger_exists", f"charger {charger_id} is already enrolled")
        ex.chargers[charger_id] = key
        ex.dirty.add(("c", charger_id))
        return Effect(h, "enroll_charger", charger_id=charger_id, detail={"public_key": key.hex()})

    def _charger_id_taken(self, charger_id: str, ex: Execution) -> bool:
        """One namespace for our chargers and OCPP charge points: holds and bills name either by id."""
        return any(charger_id in d for d in (self.chargers, ex.chargers, self.ocpp_chargers, ex.ocpp_chargers))

    def _op_enroll_ocpp_charger(self, args, h, ex) -> Effect:
        charger_id, version, digest = args["charger_id"], args["ocpp_version"], args["password_digest"]
        key = args.get("ocmf_key")
        if not isinstance(charger_id, str) or not ID_RE.match(charger_id):
            raise TxError("malformed", "enroll_ocpp_charger needs a charger id of 1-32 of A-Z a-z 0-9 . _ -")
        if version not in ocppbill.OCPP_VERSIONS:
            raise TxError("malformed", f"ocpp_version must be one of {', '.join(ocppbill.OCPP_VERSIONS)}")
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise TxError("malformed", "password_digest must be scrypt$<log2 N>$<r>$<p>$<salt hex>$<digest hex>")
        if key is not None:
            if not isinstance(key, str):
                raise TxError("malformed", "ocmf_key must be hex text")
            try:
                ocmf.load_public_key(key)
            except ocmf.OcmfError as e:
                raise TxError("malformed", e.detail) from None
        location = args.get("location")
        if location is not None:
            try:
                site.check(location)
            except site.SiteError as e:
                raise TxError("malformed", str(e)) from None
        if charger_id in self.retired or charger_id in ex.retired:
            raise TxError("charger_retired", f"charger {charger_id} is retired; its id is never enrolled again")
        if self._charger_id_taken(charger_id, ex):
            raise TxError("charger_exists", f"charger {charger_id} is already enrolled")
        ex.ocpp_chargers[charger_id] = OcppCharger(version, digest, key, location)
        ex.dirty.add(("q", charger_id))
        return Effect(h, "enroll_ocpp_charger", charger_id=charger_id,
                      detail={"ocpp_version": version, "ocmf_key": key, "location": location})

    def _op_rotate_ocpp_password(self, args, h, ex) -> Effect:
        charger_id, digest = args["charger_id"], args["password_digest"]
        cp = self.ocpp_charger(charger_id, ex) if isinstance(charger_id, str) else None
        if cp is None:
            raise TxError("unknown_charger", f"{charger_id} is not an enrolled OCPP charge point")
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise TxError("malformed", "password_digest must be scrypt$<log2 N>$<r>$<p>$<salt hex>$<digest hex>")
        if digest == cp.password_digest:
            raise TxError("malformed", f"{charger_id} has this password digest already")
        ex.ocpp_passwords[charger_id] = digest
        ex.dirty.add(("q", charger_id))
        return Effect(h, "rotate_ocpp_password", charger_id=charger_id)

    def ocpp_charger(self, charger_id: str, ex: Execution | None = None) -> OcppCharger | None:
        """The enrollment of an OCPP charge point as the state (and the block `ex`) leaves it."""
        cp = (ex.ocpp_chargers.get(charger_id) if ex is not None else None) or self.ocpp_chargers.get(charger_id)
        digest = ex.ocpp_passwords.get(charger_id) if ex is not None else None
        return cp if cp is None or digest is None else replace(cp, password_digest=digest)

    def _ocpp_bill(self, tx: bytes, h: bytes, ex: Execution, verified) -> Effect:
        """An OCPP charge point's finished transaction, billed by the rules of a receipt
        (billing_error, the tariff's amount) with the meter readings the serving bureau signed."""
        bill = ocppbill.decode(tx)
        validator = self.schedule.at(self.height + 1).by_id(bill.doc["bureau"])  # the set in force for this block
        if validator is None:
            raise TxError("unknown_bureau", f"{bill.doc['bureau']} is not a validator of this chain")
        if h not in verified and not crypto.verify(validator.public_key, bill.signed_message(), bill.signature):
            raise TxError("bad_signature", f"the bill does not verify with the node key of {bill.doc['bureau']}")
        cp = ex.ocpp_chargers.get(bill.charger_id) or self.ocpp_chargers.get(bill.charger_id)
        if cp is None:
            raise TxError("unknown_charger", f"charge point {bill.charger_id} is not enrolled for OCPP")
        if bill.charger_id in self.retired or bill.charger_id in ex.retired:
            raise TxError("charger_retired", f"charge point {bill.charger_id} is retired")
        ident = (bill.charger_id, bill.transaction_id)
        if self.ocpp_bills.get(ident, -1) >= billed_horizon_ms(ex.time_ms) or ident in ex.ocpp_bills:
            raise TxError("session_billed", f"transaction {bill.transaction_id} of {bill.charger_id} is already billed")
        tariff = ex.tariffs.get((bill.tariff_id, bill.tariff_version)) \
            or self.tariffs.get((bill.tariff_id, bill.tariff_version))
        if tariff is None:
            raise TxError("unknown_tariff", f"tariff {bill.tariff_id} v{bill.tariff_version} is not published")
        refused = self.billing_error(bill, tariff, ex.time_ms // 1000, ex)
        if refused is not None:
            raise TxError(refused.reason, refused.detail)
        periods = ocppbill.periods_of(tariff, bill.doc["readings"])
        if bill.doc["periods"] != periods:
            raise TxError("period_mismatch", f"periods {bill.doc['periods']}, the readings give {periods}")
        try:
            expected = tariff.amount_fen(bill.periods)
        except TariffError as e:
            raise TxError("wrong_amount", str(e)) from None
        if expected != bill.amount_fen:
            raise TxError("wrong_amount", f"amount {bill.amount_fen} fen, the tariff gives {expected}")
        if bill.doc["ocmf"] is not None:
            if cp.ocmf_key is None:
                raise TxError("no_meter_key", f"charge point {bill.charger_id} has no OCMF key enrolled")
            try:
                signed = ocmf.verify(bill.doc["ocmf"], cp.ocmf_key)
            except ocmf.OcmfError as e:
                raise TxError(e.reason, e.detail) from None
            if (signed.begin_wh, signed.end_wh) != (bill.meter_start_wh, bill.meter_end_wh):
                raise TxError("meter_mismatch", f"the meter signed {signed.begin_wh}..{signed.end_wh} Wh, the bill "
                                                f"says {bill.meter_start_wh}..{bill.meter_end_wh} Wh")
        wallet = self._wallet(ex, bill.wallet_id)
        if wallet is None:
            raise TxError("unknown_wallet", f"wallet {bill.wallet_id} does not exist")
        wallet.balance -= bill.amount_fen  # delivered energy: billed even below zero, like a receipt
        ex.ocpp_bills.add(ident)
        ex.dirty.add(("w", bill.wallet_id))
        return Effect(h, "ocpp_bill", bill.wallet_id, -bill.amount_fen, wallet.balance, bill.charger_id, None, None,
                      bill.energy_wh, detail={"transaction_id": bill.transaction_id,
                                              "verified_by": "ocmf" if bill.doc["ocmf"] else bill.doc["bureau"]},
                      auth_ref=bill.auth_ref)

    def _op_retire_charger(self, args, h, ex) -> Effect:
        charger_id = args["charger_id"]
        if not isinstance(charger_id, str) or not ID_RE.match(charger_id):
            raise TxError("malformed", "retire_charger needs a charger id")
        if charger_id not in self.chargers and charger_id not in ex.chargers:
            raise TxError("unknown_charger", f"charger {charger_id} is not enrolled")
        if charger_id in self.retired or charger_id in ex.retired:
            raise TxError("charger_retired", f"charger {charger_id} is already retired")
        ex.retired.add(charger_id)
        ex.dirty.add(("c", charger_id))
        return Effect(h, "retire_charger", charger_id=charger_id)

    def _op_rotate_charger_key(self, args, h, ex) -> Effect:
        charger_id, key = args["charger_id"], bytes.fromhex(args["public_key"])
        if not isinstance(charger_id, str) or not ID_RE.match(charger_id) or len(key) != 32:
            raise TxError("malformed", "rotate_charger_key needs a charger id and a 32-byte public key")
        current = ex.chargers.get(charger_id) or self.chargers.get(charger_id)
        if current is None:
            raise TxError("unknown_charger", f"charger {charger_id} is not enrolled")
        if charger_id in self.retired or charger_id in ex.retired:
            raise TxError("charger_retired", f"charger {charger_id} is retired")
        if charger_id in ex.charger_rekeys:
            raise TxError("rotation_pending", f"the key of {charger_id} is already rotated in this block")
        if key == current or any(key == old for _, old in self.charger_old_keys.get(charger_id, ())):
            raise TxError("key_reused", f"charger {charger_id} has had this key before; rotate to a new one")
        ex.charger_rekeys[charger_id] = key
        ex.dirty.add(("c", charger_id))
        return Effect(h, "rotate_charger_key", charger_id=charger_id, detail={"public_key": key.hex()})

    def _op_rotate_operator_key(self, operator_id, args, h, ex) -> Effect:
        # always the signer's own key: it signed this action, so it holds the key being replaced
        key = bytes.fromhex(args["public_key"])
        if len(key) != 32:
            raise TxError("malformed", "rotate_operator_key needs a 32-byte public key")
        if operator_id in ex.operator_rekeys:
            raise TxError("rotation_pending", f"the key of {operator_id} is already rotated in this block")
        if key == self.operators[operator_id] \
                or any(key == old for _, old in self.operator_old_keys.get(operator_id, ())):
            raise TxError("key_reused", f"operator {operator_id} has had this key before; rotate to a new one")
        ex.operator_rekeys[operator_id] = key
        ex.dirty.add(("o", operator_id))
        return Effect(h, "rotate_operator_key", detail={"operator": operator_id, "public_key": key.hex()})

    def _op_open_wallet(self, args, h, ex) -> Effect:
        wallet_id = args["wallet_id"]
        key = bytes.fromhex(args["public_key"]) if args.get("public_key") is not None else None
        cards = [str(c) for c in args.get("cards", [])]
        if not ID_RE.match(wallet_id) or (key is not None and len(key) != 32):
            raise TxError("malformed", "open_wallet needs a wallet id and, if given, the driver's 32-byte public key")
        if wallet_id in ex.wallets or wallet_id in self.wallets:
            raise TxError("wallet_exists", f"wallet {wallet_id} already exists")
        for card in cards:
            if not ID_RE.match(card):
                raise TxError("malformed", f"card uid {card!r} is not valid")
            if self._card_wallet(card, ex) is not None:
                raise TxError("card_in_use", f"card {card} belongs to another wallet")
        ex.wallets[wallet_id] = Wallet(key, 0)
        for card in cards:
            ex.cards[card] = wallet_id
            ex.dirty.add(("k", card))
        ex.dirty.add(("w", wallet_id))
        return Effect(h, "open_wallet", wallet_id, 0, 0, detail={"cards": cards})

    def _op_issue_binding_code(self, args, h, ex) -> Effect:
        wallet_id, expires = args["wallet_id"], args["expires"]
        key = bytes.fromhex(args["binding_key"])
        if not isinstance(wallet_id, str) or not ID_RE.match(wallet_id) or len(key) != 32:
            raise TxError("malformed", "issue_binding_code needs a wallet id and a 32-byte binding key")
        block_time_s = ex.time_ms // 1000
        if type(expires) is not int or not block_time_s < expires <= block_time_s + MAX_BINDING_S:
            raise TxError("malformed", f"expires must be after the block time {block_time_s} and at most "
                                       f"{MAX_BINDING_S} s after it")
        if self.wallets.get(wallet_id) is None and wallet_id not in ex.wallets:
            raise TxError("unknown_wallet", f"wallet {wallet_id} does not exist")
        ex.bindings[wallet_id] = (key, expires)  # replaces an unused one
        ex.dirty.add(("b", wallet_id))
        return Effect(h, "issue_binding_code", wallet_id, detail={"binding_key": key.hex(), "expires": expires})

    def _credit(self, kind: str, args, h, ex, delta: int, detail: dict) -> Effect:
        """A payment-referenced change of a wallet's balance (top_up, refund, adjust): each
        reference counts once, ever, across the three."""
        wallet_id, reference = args["wallet_id"], args.get("reference")
        if not isinstance(reference, str) or not PAYMENT_REF_RE.match(reference):
            raise TxError("malformed", f"{kind} needs the payment's reference: 1-64 of A-Z a-z 0-9 . _ : @ / -")
        credited = ex.payments.get(reference) or self.payments.get(reference)
        if credited is not None:
            raise TxError("duplicate_payment", f"payment {reference} is already credited to wallet {credited}")
        if self.wallets.get(wallet_id) is None and wallet_id not in ex.wallets:
            raise TxError("unknown_wallet", f"wallet {wallet_id} does not exist")
        wallet = self._wallet(ex, wallet_id)
        wallet.balance += delta
        ex.payments[reference] = wallet_id
        ex.dirty.add(("p", reference))
        ex.dirty.add(("w", wallet_id))
        return Effect(h, kind, wallet_id, delta, wallet.balance, detail={"reference": reference, **detail})

    def _op_top_up(self, args, h, ex) -> Effect:
        amount = args["amount_fen"]
        if type(amount) is not int or not 0 < amount <= MAX_TOP_UP_FEN:
            raise TxError("malformed", f"top_up amount must be 1..{MAX_TOP_UP_FEN} fen")
        return self._credit("top_up", args, h, ex, amount, {})

    def _op_refund(self, args, h, ex) -> Effect:
        amount = args["amount_fen"]
        if type(amount) is not int or not 0 < amount <= MAX_TOP_UP_FEN:
            raise TxError("malformed", f"refund amount must be 1..{MAX_TOP_UP_FEN} fen")
        return self._credit("refund", args, h, ex, amount, {"note": _reason_text(args, "refund")})

    def _op_adjust(self, args, h, ex) -> Effect:
        delta = args["delta_fen"]
        if type(delta) is not int or not 0 < abs(delta) <= MAX_TOP_UP_FEN:
            raise TxError("malformed", f"adjust delta must be ±1..{MAX_TOP_UP_FEN} fen")
        return self._credit("adjust", args, h, ex, delta, {"note": _reason_text(args, "adjust")})

    def _card_arg(self, args, ex, action: str) -> tuple[str, str]:
        """(card, its wallet) of an action on a bound card."""
        card = args["card"]
        if not isinstance(card, str) or not ID_RE.match(card):
            raise TxError("malformed", f"{action} needs a card uid of 1-32 of A-Z a-z 0-9 . _ -")
        wallet_id = self._card_wallet(card, ex)
        if wallet_id is None:
            raise TxError("unknown_card", f"card {card} is not bound to a wallet")
        return card, wallet_id

    def _op_bind_card(self, args, h, ex) -> Effect:
        wallet_id, card = args["wallet_id"], args["card"]
        if not isinstance(card, str) or not ID_RE.match(card):
            raise TxError("malformed", "bind_card needs a card uid of 1-32 of A-Z a-z 0-9 . _ -")
        if self.wallets.get(wallet_id) is None and wallet_id not in ex.wallets:
            raise TxError("unknown_wallet", f"wallet {wallet_id} does not exist")
        if self._card_wallet(card, ex) is not None:
            raise TxError("card_in_use", f"card {card} is bound to a wallet; unbind it first")
        ex.cards[card] = wallet_id
        ex.card_blocks[card] = False
        ex.dirty.add(("k", card))
        return Effect(h, "bind_card", wallet_id, detail={"card": card})

    def _op_unbind_card(self, args, h, ex) -> Effect:
        card, wallet_id = self._card_arg(args, ex, "unbind_card")
        ex.cards[card] = None
        ex.card_blocks[card] = False  # a block ends with the binding: the uid may be bound afresh
        ex.dirty.add(("k", card))
        return Effect(h, "unbind_card", wallet_id, detail={"card": card})

    def _op_block_card(self, args, h, ex) -> Effect:
        card, wallet_id = self._card_arg(args, ex, "block_card")
        reason = _reason_text(args, "block_card")
        if self.card_blocked(card, ex):
            raise TxError("card_blocked", f"card {card} is already blocked")
        ex.card_blocks[card] = True
        ex.dirty.add(("k", card))
        return Effect(h, "block_card", wallet_id, detail={"card": card, "note": reason})

    def _op_unblock_card(self, args, h, ex) -> Effect:
        card, wallet_id = self._card_arg(args, ex, "unblock_card")
        if not self.card_blocked(card, ex):
            raise TxError("card_not_blocked", f"card {card} is not blocked")
        ex.card_blocks[card] = False
        ex.dirty.add(("k", card))
        return Effect(h, "unblock_card", wallet_id, detail={"card": card})

    def _op_publish_tariff(self, args, h, ex) -> Effect:
        try:
            tariff = Tariff.from_doc(args["tariff"])
        except TariffError as e:
            raise TxError("malformed", str(e)) from None
        if not ID_RE.match(tariff.tariff_id) or not tariff.version <= MAX_TARIFF_VERSION:
            raise TxError("malformed", f"a tariff needs an id of 1-32 characters and a version 1..{MAX_TARIFF_VERSION}")
        block_time_s = ex.time_ms // 1000
        since = args.get("effective_from", block_time_s)  # absent: in force from the block that commits it
        if type(since) is not int or not 0 <= since < MAX_ACTION_TIME:
            raise TxError("malformed", "effective_from must be integer UTC seconds")
        if since < block_time_s:
            raise TxError("effective_in_past", f"effective_from {since} is before the block time {block_time_s}; "
                                               f"a tariff cannot reprice sessions already started")
        ident = (tariff.tariff_id, tariff.version)
        if ident in self.tariffs or ident in ex.tariffs:
            raise TxError("tariff_exists", f"tariff {tariff.tariff_id} v{tariff.version} is already published")
        # Versions come in force in version order: chargers refuse a push older than the version they hold.
        published = [(v, t) for (tid, v), t in (*self.tariff_from.items(), *ex.tariff_from.items())
                     if tid == tariff.tariff_id]
        if published:
            latest, latest_from = max(published)
            if tariff.version < latest or since < latest_from:
                raise TxError("tariff_out_of_order", f"tariff {tariff.tariff_id} v{latest} is in force from "
                                                     f"{latest_from}: a new version needs a higher number and an "
                                                     f"effective_from at or after that")
        ex.tariffs[ident] = tariff
        ex.tariff_from[ident] = since
        ex.dirty.add(("t", *ident))
        return Effect(h, "publish_tariff", detail={**tariff.to_doc(), "effective_from": since})


def _reason_text(args, action: str) -> str:
    reason = args["reason"]
    if not isinstance(reason, str) or not REASON_RE.match(reason):
        raise TxError("malformed", f"{action} needs a reason: 1-200 printable characters")
    return reason


def _receipt_session(tx: bytes) -> tuple[str, bytes] | None:
    """(charger id, session id) read from a receipt transaction's fixed prefix without decoding
    it (fields 2 and 4 of docs/receipt-v1.md); None for other kinds or a cut-short prefix (the
    full decode refuses it)."""
    if not tx or tx[0] != KIND_RECEIPT or len(tx) < 3:
        return None
    n = tx[2]
    session = tx[7 + n:23 + n]
    if len(session) != 16:
        return None
    try:
        return tx[3:3 + n].decode("ascii"), session
    except UnicodeDecodeError:
        return None


def receipt_ids(tx: bytes) -> tuple[str | None, int | None]:
    """Best-effort charger id and seq of a receipt transaction from its fixed prefix, without
    decoding it (for the reply to a refused one, and ingest's check of a relayed one)."""
    if not tx or tx[0] != KIND_RECEIPT:
        return None, None
    body = tx[1:]
    try:
        n = body[1]
        charger = body[2:2 + n].decode("ascii")
        seq = int.from_bytes(body[2 + n:6 + n], "big")
        return charger, seq
    except (IndexError, UnicodeDecodeError):
        return None, None
