"""State sync: the ledger state at a certified height H as one value, its chunked wire form, and
its verification into a `LedgerState` a node carries on from (docs/consensus.md, "Joining from a
snapshot"). Sans-I/O: storage reads and writes one (storage/repository.py), the API serves it,
`bureau join` fetches it.

What a snapshot holds and how much of it is proven:
- every state-map record at H: their map's root must be the state root of header H, whose
  certificate is checked against the set in force at H, followed from the genesis through the
  certified `v/set` changes. The state built from the records is then mapped again and must give
  the same root, so a record the ledger would not have written is refused too;
- the full tariff documents: each must hash to the digest its `t/` record holds;
- history, which the map does not hold, bounded by the chargers and the billing horizon (v2): each
  charger's seq window (highest seq and which seqs below it are committed: `seq_too_old`, new or
  not), the ids of the receipts in a window committed since the horizon (`duplicate` or
  `seq_reused`), the sessions and OCPP transactions billed since the horizon (`session_billed`),
  each with its block's time, charger and operator keys replaced by rotations (`key_rotated`,
  `key_reused`) and the operator and driver actions decided within their window (`duplicate`).
  Nothing certified proves it; `bureau join` fetches its digest from a second bureau and refuses
  a snapshot whose history differs. A joined node with wrong history can only refuse a block the
  others commit (its state root would differ: it stops) or propose one they refuse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .block import BlockError
from .canonical import dumps
from .certificate import CertificateError
from .genesis import Genesis
from .history import MemoryHistory
from .proof import NotCertified, certified_header, follow_validator_changes
from .state import LedgerState, MeterMark, OcppCharger, Wallet, billed_horizon_ms
from .statemap import StateMap
from .tariff import Tariff, TariffError
from . import records

VERSION = 2  # v1 carried every receipt id and billed session; a v2 node refuses it (unsupported_version)
ITEMS_PER_CHUNK = 2000  # a chunk of records stays far below a megabyte


class SnapshotError(ValueError):
    """A snapshot that is malformed, not certified, or does not make its certified state."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class StateSnapshot:
    height: int
    header: str  # hex of header H's bytes
    certificate: str  # its commit certificate (JSON text)
    validator_changes: list[dict]  # as GET /v1/validators/changes serves them, up to H
    records: dict[str, str]  # every state-map record at H
    tariffs: list[dict] = field(default_factory=list)  # the full document of every t/ record
    old_keys: list[tuple[str, str, int, str]] = field(default_factory=list)  # (c|o, owner, until height, key hex)
    windows: list[tuple[str, int, str]] = field(default_factory=list)  # (charger, highest seq, gaps hex)
    # (charger, seq, receipt id, time ms of its block): in the charger's window, since the horizon
    receipts: list[tuple[str, int, str, int]] = field(default_factory=list)
    sessions: list[tuple[str, str, int]] = field(default_factory=list)  # (charger, session id hex, block ms)
    decided: list[tuple[str, int]] = field(default_factory=list)  # (tx hash hex, time ms of its block) in window
    # (charge point, transaction id, time ms of its block): billed since the horizon
    ocpp_bills: list[tuple[str, str, int]] = field(default_factory=list)

    def history_items(self) -> list[list]:
        """The unverifiable part, in one canonical order: what a second bureau cross-checks."""
        return sorted([["key", *k] for k in self.old_keys] + [["window", *w] for w in self.windows]
                      + [["receipt", *r] for r in self.receipts]
                      + [["session", *s] for s in self.sessions] + [["decided", *d] for d in self.decided]
                      + [["ocpp_bill", *b] for b in self.ocpp_bills])

    def history_digest(self) -> str:
        return history_digest(self.history_items())

    def items(self) -> list[list]:
        return ([["record", k, v] for k, v in sorted(self.records.items())]
                + [["tariff", doc] for doc in sorted(self.tariffs, key=lambda d: (d["tariff_id"], d["version"]))]
                + self.history_items())


def history_digest(items: list[list]) -> str:
    return hashlib.sha256(dumps({"v": VERSION, "history": items})).hexdigest()


# ---- taking one ----------------------------------------------------------------------------

def take(state_map: StateMap, height: int, header_hex: str, certificate: str, changes: list[dict],
         tariffs: list[dict], history: dict) -> StateSnapshot:
    """The snapshot of `state_map` (the map after block `height`) with what storage read at that
    height: `tariffs` (documents of every version published by then) and `history` (the lists
    old_keys, windows, receipts, sessions, decided, ocpp_bills)."""
    recs = dict(state_map.items())
    wanted = {k for k in recs if k.startswith("t/")}
    docs = [d for d in tariffs if f"t/{d['tariff_id']}/{d['version']}" in wanted]
    return StateSnapshot(height, header_hex, certificate, [c for c in changes if c["height"] <= height], recs, docs,
                         **history)


# ---- the wire form (docs/consensus.md) -----------------------------------------------------

def manifest_and_chunks(snap: StateSnapshot, per_chunk: int = ITEMS_PER_CHUNK) -> tuple[dict, list[dict]]:
    items = snap.items()
    chunks = [{"v": VERSION, "height": snap.height, "index": i // per_chunk, "items": items[i:i + per_chunk]}
              for i in range(0, len(items), per_chunk)] or [{"v": VERSION, "height": snap.height, "index": 0,
                                                             "items": []}]
    manifest = {"v": VERSION, "height": snap.height, "header": snap.header, "certificate": snap.certificate,
                "validator_changes": snap.validator_changes, "items": len(items),
                "chunks": [hashlib.sha256(dumps(c)).hexdigest() for c in chunks],
                "history_digest": snap.history_digest()}
    return manifest, chunks


def from_wire(manifest: dict, chunks: list[dict]) -> StateSnapshot:
    """The snapshot a manifest and its chunks make; SnapshotError("malformed") when they do not
    fit together (a chunk that is not the one the manifest names, a missing item, an odd item)."""
    try:
        if manifest.get("v") != VERSION:
            raise SnapshotError("unsupported_version", f"snapshot version {manifest.get('v')!r}, this node reads "
                                                       f"{VERSION} only: join from a bureau of this release")
        height = manifest["height"]
        digests = manifest["chunks"]
        if type(height) is not int or not isinstance(digests, list) or len(chunks) != len(digests):
            raise SnapshotError("malformed", "the manifest needs an integer height and one digest per chunk")
        snap = StateSnapshot(height, str(manifest["header"]), str(manifest["certificate"]),
                             list(manifest["validator_changes"]), {})
        count = 0
        for i, (chunk, digest) in enumerate(zip(chunks, digests)):
            if hashlib.sha256(dumps(chunk)).hexdigest() != digest:
                raise SnapshotError("malformed", f"chunk {i} is not the one the manifest names")
            if chunk.get("height") != height or chunk.get("index") != i:
                raise SnapshotError("malformed", f"chunk {i} is of another snapshot")
            for item in chunk["items"]:
                _add_item(snap, item)
                count += 1
        if count != manifest["items"]:
            raise SnapshotError("malformed", f"the chunks hold {count} items, the manifest says {manifest['items']}")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, SnapshotError):
            raise
        raise SnapshotError("malformed", f"snapshot is malformed: {e}") from None
    if snap.history_digest() != manifest["history_digest"]:
        raise SnapshotError("malformed", "the history items do not make the manifest's history digest")
    return snap


def _add_item(snap: StateSnapshot, item: list) -> None:
    kind = item[0]
    if kind == "record" and len(item) == 3 and isinstance(item[1], str) and isinstance(item[2], str):
        if item[1] in snap.records:
            raise SnapshotError("malformed", f"record {item[1]} appears twice")
        snap.records[item[1]] = item[2]
    elif kind == "tariff" and len(item) == 2 and isinstance(item[1], dict):
        snap.tariffs.append(item[1])
    elif kind == "key" and len(item) == 5 and item[1] in ("c", "o") and type(item[3]) is int:
        snap.old_keys.append((item[1], str(item[2]), item[3], str(item[4])))
    elif kind == "window" and len(item) == 4 and type(item[2]) is int and isinstance(item[3], str):
        snap.windows.append((str(item[1]), item[2], item[3]))
    elif kind == "receipt" and len(item) == 5 and type(item[2]) is int and type(item[4]) is int:
        snap.receipts.append((str(item[1]), item[2], str(item[3]), item[4]))
    elif kind == "session" and len(item) == 4 and type(item[3]) is int:
        snap.sessions.append((str(item[1]), str(item[2]), item[3]))
    elif kind == "decided" and len(item) == 3 and type(item[2]) is int:
        snap.decided.append((str(item[1]), item[2]))
    elif kind == "ocpp_bill" and len(item) == 4 and type(item[3]) is int:
        snap.ocpp_bills.append((str(item[1]), str(item[2]), item[3]))
    else:
        raise SnapshotError("malformed", f"item {str(item)[:80]} is of no kind a snapshot holds")


def evidence_of(recs) -> dict[tuple, tuple[bytes, bytes]]:
    """`LedgerState.evidence` entries from `e/<validator>/<height>/<round>/<step>` records."""
    out = {}
    for key, value in recs:
        vid, h, round_, step = key.split("/")[1:]
        a, b = json.loads(value)["block_ids"]
        out[(vid, int(h), int(round_), int(step))] = (bytes.fromhex(a), bytes.fromhex(b))
    return out


# ---- verifying one into a state ------------------------------------------------------------

def restore(genesis: Genesis, snap: StateSnapshot) -> LedgerState:
    """The ledger state after block H, from `snap`, with its history in memory; SnapshotError
    with one clear reason when anything provable does not prove."""
    try:
        if any(c.get("height", 0) > snap.height for c in snap.validator_changes):
            raise SnapshotError("malformed", "a validator change after the snapshot's height")
        schedule = follow_validator_changes(genesis, snap.validator_changes)
        header = certified_header(snap.header, snap.certificate, genesis, schedule)
    except (NotCertified, CertificateError) as e:
        raise SnapshotError("not_certified", f"header {snap.height} is not certified by the validator set in "
                                             f"force at its height: {e}") from None
    except (KeyError, TypeError, ValueError, BlockError) as e:
        raise SnapshotError("not_certified", f"the header or a validator change is malformed: {e}") from None
    if header.height != snap.height:
        raise SnapshotError("malformed", f"the header is of height {header.height}, the snapshot says {snap.height}")
    root = StateMap().update(snap.records).root
    if root != header.state_root:
        raise SnapshotError("root_mismatch", f"the records make state root {root.hex()}, but the certified header "
                                             f"{header.height} says {header.state_root.hex()}")
    state = LedgerState(genesis, MemoryHistory())
    state.schedule = schedule
    try:
        _fill(state, snap, header.time_ms)
    except (KeyError, TypeError, ValueError, IndexError, TariffError) as e:
        if isinstance(e, SnapshotError):
            raise
        raise SnapshotError("malformed", f"a record or history item does not parse: {e}") from None
    state.height, state.last_hash, state.last_time_ms = header.height, header.hash, header.time_ms
    state.forget_decided_before(header.time_ms)
    state.forget_billed_before(header.time_ms)
    state.rebuild_map()
    if state.state_root != header.state_root:
        raise SnapshotError("records_inconsistent", "the state built from the records does not map back to the "
                                                    "certified root: a record the ledger would not write")
    if state.schedule.latest.record() != snap.records.get("v/set"):
        raise SnapshotError("records_inconsistent", "the v/set record is not the last set the changes decide")
    return state


def _fill(state: LedgerState, snap: StateSnapshot, time_ms: int) -> None:
    docs = {}
    for doc in snap.tariffs:
        t = Tariff.from_doc(doc)
        docs[(t.tariff_id, t.version)] = t
    state.operators = {}
    state.tariffs, state.tariff_from = {}, {}
    for key, value in snap.records.items():
        kind, _, rest = key.partition("/")
        doc = json.loads(value)
        if kind == "o":
            state.operators[rest] = bytes.fromhex(doc["public_key"])
        elif kind == "c":
            state.chargers[rest] = bytes.fromhex(doc["public_key"])
            if doc["retired"]:
                state.retired.add(rest)
        elif kind == "w":
            pk = doc["public_key"]
            state.wallets[rest] = Wallet(bytes.fromhex(pk) if pk is not None else None, doc["balance_fen"])
        elif kind == "k":
            state.cards[rest] = doc["wallet_id"]
            if doc["blocked"]:
                state.blocked_cards.add(rest)
        elif kind == "t":
            tariff_id, _, version = rest.rpartition("/")
            ident = (tariff_id, int(version))
            t = docs.get(ident)
            if t is None or records.tariff_digest(t) != doc["digest"]:
                raise SnapshotError("tariff_mismatch", f"no tariff document of {key} has the digest its record holds")
            state.tariffs[ident] = t
            state.tariff_from[ident] = doc["effective_from"]
        elif kind == "m":
            charger_id, _, serial = rest.partition("/")
            state.meters[(charger_id, serial)] = MeterMark(doc["seq"], doc["start_wh"], doc["end_wh"])
        elif kind == "p":
            state.payments[rest] = doc["wallet_id"]
        elif kind == "b":
            state.bindings[rest] = (bytes.fromhex(doc["binding_key"]), doc["expires"])
        elif kind == "e":
            state.evidence.update(evidence_of([(key, value)]))
        elif kind == "q":
            state.ocpp_chargers[rest] = OcppCharger(doc["ocpp"], doc["password_digest"], doc["ocmf_key"],
                                                    doc["location"])
        elif key != "v/set":
            raise SnapshotError("malformed", f"record {key} is of no kind the ledger writes")
    if set(state.operators) != set(state.genesis.operators):
        raise SnapshotError("records_inconsistent", "the operator records are not the genesis operators")
    for role, owner, until, key in sorted(snap.old_keys, key=lambda k: k[2]):
        if until > snap.height or owner not in (state.chargers if role == "c" else state.operators):
            raise SnapshotError("bad_history", f"old key of {owner} until {until}: no such {role} at {snap.height}")
        olds = state.charger_old_keys if role == "c" else state.operator_old_keys
        olds.setdefault(owner, []).append((until, bytes.fromhex(key)))
    history = state.history
    windows = state.seq_windows
    for charger_id, high, gaps in snap.windows:
        if charger_id not in state.chargers or windows.high(charger_id) is not None:
            raise SnapshotError("bad_history", f"seq window of {charger_id}: no such charger, or a second window")
        try:
            windows.merge(charger_id, high, windows.from_gaps(high, gaps))
        except ValueError as e:
            raise SnapshotError("bad_history", f"seq window of {charger_id}: {e}") from None
    horizon = billed_horizon_ms(time_ms)

    def when(what: str, at_ms: int) -> None:
        if not horizon <= at_ms <= time_ms:
            raise SnapshotError("bad_history", f"{what} at block time {at_ms}: outside the billing horizon "
                                               f"{horizon}..{time_ms} of the snapshot")
    for charger_id, seq, rid, at_ms in snap.receipts:
        when(f"receipt {charger_id}#{seq}", at_ms)
        if not windows.committed(charger_id, seq):
            raise SnapshotError("bad_history", f"receipt {charger_id}#{seq} is not committed in its charger's window")
        history.receipts[(charger_id, seq)] = rid
    for charger_id, session, at_ms in snap.sessions:
        when(f"session {session} of {charger_id}", at_ms)
        history.sessions[(charger_id, bytes.fromhex(session))] = at_ms
    for charger_id, transaction_id, at_ms in snap.ocpp_bills:
        when(f"OCPP bill {charger_id}/{transaction_id}", at_ms)
        if charger_id not in state.ocpp_chargers:
            raise SnapshotError("bad_history", f"OCPP bill {charger_id}/{transaction_id} of a charge point never "
                                               "enrolled")
        state.ocpp_bills[(charger_id, transaction_id)] = at_ms
    for tx_hash, time_ms in snap.decided:
        state.operator_txs[bytes.fromhex(tx_hash)] = time_ms
