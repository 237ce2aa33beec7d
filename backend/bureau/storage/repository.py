"""Writes a committed block and the state it produces in one database transaction, and
rebuilds the in-memory ledger state from the database at start."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from sqlalchemy import event

from ..ledger import evidence, snapshot, valset
from ..ledger.block import Block, Header
from ..ledger.canonical import dumps
from ..ledger.history import SEQ_WINDOW, SeqWindows
from ..ledger.state import (DECIDED_KEPT_MS, Execution, LedgerState, MeterMark, OcppCharger, Wallet,
                            billed_horizon_ms)
from ..ledger.tariff import Tariff
from ..ledger.tx import KIND_RECEIPT
from . import migrate
from . import tables as t


VALSET_KEY = "v/set"


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        read_only = "mode=ro" in url  # (an audit: a read-only file keeps the journal mode it has)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            if not read_only:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # an acked receipt must survive a power cut
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
        return engine
    return sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


class StateRootMismatch(ValueError):
    """The entities in the database do not make the state root of the stored head block."""


SESSIONS_PER_QUERY = 250  # well inside SQLite's and PostgreSQL's bound-parameter limits


def _param_mark(conn: sa.Connection) -> str:
    """The driver's positional parameter mark: `?` for sqlite3, `%s` for psycopg."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _insert_rows(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: list[tuple],
                 replacing: tuple[str, ...] = ()) -> None:
    """executemany at the driver, rows as tuples in `columns` order: for the tables that take rows
    per receipt, SQLAlchemy's per-row parameter processing cost more than the inserts. With
    `replacing` (the primary key's columns), a row of the same key is replaced (SQLite and
    PostgreSQL alike)."""
    ph = _param_mark(conn)
    upsert = ""
    if replacing:
        rest = [c for c in columns if c not in replacing]
        upsert = (f" ON CONFLICT ({', '.join(replacing)}) DO UPDATE SET "
                  + ", ".join(f"{c} = excluded.{c}" for c in rest))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([ph] * len(columns))})"
                         + upsert, rows)


def _update_rows(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], keys: tuple[str, ...],
                 rows: list[tuple], also: str = "") -> None:
    """executemany of `UPDATE table SET columns WHERE keys [AND also]` at the driver, each row the
    values of `columns` then those of `keys`: the wallets, meter marks and holds a block changes
    are about one row per receipt each, and SQLAlchemy's per-row parameter processing cost more
    than the updates."""
    ph = _param_mark(conn)
    where = [f"{k} = {ph}" for k in keys] + ([also] if also else [])
    conn.exec_driver_sql(f"UPDATE {table.name} SET {', '.join(f'{c} = {ph}' for c in columns)} "
                         f"WHERE {' AND '.join(where)}", rows)


TX_COLUMNS = ("height", "idx", "tx_hash", "kind", "data")
RECEIPT_COLUMNS = ("charger_id", "seq", "receipt_id", "wallet_id", "amount_fen", "energy_wh", "height", "idx")
OCPP_BILL_COLUMNS = ("charger_id", "transaction_id", "wallet_id", "amount_fen", "energy_wh", "verified_by", "time_ms",
                     "height", "idx")
ENTRY_COLUMNS = ("wallet_id", "height", "idx", "kind", "delta_fen", "balance_after", "tx_hash", "charger_id", "seq",
                 "energy_wh", "time_ms")


class StoredHistory:
    """The committed receipts and billed sessions, read from the tables `commit_block` writes them
    to (by their primary keys): the ledger's `History` at a node. The chain commits a block here
    before its state applies it and executes the next block only after that, so the tables hold
    exactly the state's history whenever it executes."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def receipt_id(self, charger_id: str, seq: int) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(t.receipts.c.receipt_id)
                                 .where(t.receipts.c.charger_id == charger_id, t.receipts.c.seq == seq)).scalar()
            if found is None:  # a receipt of the blocks a node that joined from a snapshot does not hold
                sr = t.snapshot_receipts.c
                found = conn.execute(sa.select(sr.receipt_id)
                                     .where(sr.charger_id == charger_id, sr.seq == seq)).scalar()
            return found

    def billed_sessions(self, sessions: set[tuple[str, bytes]], since_ms: int) -> set[tuple[str, bytes]]:
        """One query per `SESSIONS_PER_QUERY` pairs, an OR of primary-key matches: each is an
        index search on SQLite and PostgreSQL alike (a row-value IN makes SQLite scan). The
        horizon filters the rows found, so the OR stays the whole condition."""
        pairs, found = sorted(sessions), set()
        with self.engine.connect() as conn:
            ph = _param_mark(conn)
            for i in range(0, len(pairs), SESSIONS_PER_QUERY):
                chunk = pairs[i:i + SESSIONS_PER_QUERY]
                where = " OR ".join([f"(charger_id = {ph} AND session_id = {ph})"] * len(chunk))
                rows = conn.exec_driver_sql(f"SELECT charger_id, session_id, time_ms FROM billed_sessions "
                                            f"WHERE {where}", tuple(v for pair in chunk for v in pair))
                found.update((c, bytes(sid)) for c, sid, at_ms in rows if at_ms >= since_ms)
        return found

    def record(self, receipts, sessions, time_ms) -> None:
        """Nothing to do: `Repository.commit_block` wrote them in the block's transaction."""


class Repository:
    def __init__(self, url: str, *, create: bool = True) -> None:
        """`create=False` opens the tables as they are (an audit of an existing chain)."""
        self.engine = make_engine(url)
        self._base: int | None = None  # snapshot_base(), read once
        if create:  # (else: as it is, read-only for an audit)
            migrate.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- writing -------------------------------------------------------------------------

    def commit_block(self, block: Block, certificate: bytes, ex: Execution, state: LedgerState) -> None:
        """Persist `block`, its certificate and everything `ex` changed, atomically.

        Call before `state.apply(ex, ...)`: `state` still tells which wallets are new.
        """
        h = block.header
        rows_tx, rows_receipts, rows_entries, rows_ocpp = [], [], [], []
        height, time_ms = h.height, h.time_ms
        for idx, (tx, eff) in enumerate(zip(block.txs, ex.effects)):
            rows_tx.append((height, idx, eff.tx_hash, eff.kind, tx))
            if eff.kind == "receipt":
                rows_receipts.append((eff.charger_id, eff.seq, eff.receipt_id, eff.wallet_id, -eff.delta_fen,
                                      eff.energy_wh, height, idx))
            if eff.kind == "ocpp_bill":
                rows_ocpp.append((eff.charger_id, eff.detail["transaction_id"], eff.wallet_id, -eff.delta_fen,
                                  eff.energy_wh, eff.detail["verified_by"], h.time_ms, h.height, idx))
            if eff.wallet_id is not None and eff.balance_after is not None:
                rows_entries.append((eff.wallet_id, height, idx, eff.kind, eff.delta_fen, eff.balance_after,
                                     eff.tx_hash, eff.charger_id, eff.seq, eff.energy_wh, time_ms))
        new_wallets = [{"wallet_id": w, "public_key": v.public_key, "balance_fen": v.balance, "updated_height": h.height}
                       for w, v in ex.wallets.items() if w not in state.wallets]
        old_wallets = [(v.balance, v.public_key, height, w) for w, v in ex.wallets.items() if w in state.wallets]
        new_marks = [{"charger_id": c, "meter_serial": m, "seq": v.seq, "start_wh": v.start_wh, "end_wh": v.end_wh,
                      "updated_height": height} for (c, m), v in ex.meters.items() if (c, m) not in state.meters]
        old_marks = [(v.seq, v.start_wh, v.end_wh, height, c, m) for (c, m), v in ex.meters.items()
                     if (c, m) in state.meters]
        with self.engine.begin() as conn:
            conn.execute(t.blocks.insert(), {
                "height": h.height, "hash": h.hash, "prev_hash": h.prev_hash, "time_ms": h.time_ms,
                "tx_root": h.tx_root, "state_root": h.state_root, "proposer": h.proposer, "tx_count": h.tx_count,
                "header": h.encode(), "certificate": certificate})
            if rows_tx:
                _insert_rows(conn, t.txs, TX_COLUMNS, rows_tx)
            # parents before the rows that name them: the foreign keys are checked per statement
            if ex.chargers:
                conn.execute(t.chargers.insert(), [{"charger_id": c, "public_key": k, "enrolled_height": h.height}
                                                   for c, k in ex.chargers.items()])
            if ex.retired:
                conn.execute(t.retired_chargers.insert(), [{"charger_id": c, "height": h.height} for c in ex.retired])
            if ex.charger_rekeys:
                conn.execute(t.charger_keys.insert(), [{"charger_id": c, "height": h.height, "public_key": k}
                                                       for c, k in ex.charger_rekeys.items()])
            if ex.operator_rekeys:
                conn.execute(t.operator_keys.insert(), [{"operator_id": o, "height": h.height, "public_key": k}
                                                        for o, k in ex.operator_rekeys.items()])
            if ex.ocpp_chargers:
                conn.execute(t.ocpp_chargers.insert(), [
                    {"charger_id": c, "ocpp_version": cp.ocpp_version, "password_digest": cp.password_digest,
                     "ocmf_key": cp.ocmf_key, "location": cp.location and dumps(cp.location).decode(),
                     "enrolled_height": h.height} for c, cp in ex.ocpp_chargers.items()])
            if ex.ocpp_passwords:  # (after the enrollments: one block may enroll and rotate)
                conn.execute(t.ocpp_chargers.update().where(t.ocpp_chargers.c.charger_id == sa.bindparam("c"))
                             .values(password_digest=sa.bindparam("d")),
                             [{"c": c, "d": d} for c, d in ex.ocpp_passwords.items()])
            if new_wallets:
                conn.execute(t.wallets.insert(), new_wallets)
            if old_wallets:
                _update_rows(conn, t.wallets, ("balance_fen", "public_key", "updated_height"), ("wallet_id",),
                             old_wallets)
            changed_cards = sorted(set(ex.cards) | set(ex.card_blocks))
            if changed_cards:  # a card's row is its binding as the block leaves it; unbound: none
                conn.execute(t.cards.delete().where(t.cards.c.uid.in_(changed_cards)))
                bound = [{"uid": c, "wallet_id": w, "blocked": state.card_blocked(c, ex)}
                         for c in changed_cards if (w := ex.cards[c] if c in ex.cards else state.cards.get(c))]
                if bound:
                    conn.execute(t.cards.insert(), bound)
            if ex.tariffs:
                conn.execute(t.tariffs.insert(), [{"tariff_id": tid, "version": v, "doc": dumps(tf.to_doc()).decode(),
                                                   "height": h.height, "effective_from": ex.tariff_from[(tid, v)]}
                                                  for (tid, v), tf in ex.tariffs.items()])
            if rows_receipts:
                _insert_rows(conn, t.receipts, RECEIPT_COLUMNS, rows_receipts)
            if rows_entries:
                _insert_rows(conn, t.wallet_entries, ENTRY_COLUMNS, rows_entries)
            if rows_ocpp:
                # a transaction id billed again once its earlier bill passed the billing horizon (the
                # ledger no longer counts the old one) is another bill: a row of its own (keyed by height)
                _insert_rows(conn, t.ocpp_bills, OCPP_BILL_COLUMNS, rows_ocpp)
            if ex.sessions:
                # a session billed again after the horizon (the ledger no longer counts the earlier
                # bill) takes the row: the latest bill is the one the rule counts
                _insert_rows(conn, t.billed_sessions, ("charger_id", "session_id", "height", "time_ms"),
                             [(c, sid, height, time_ms) for c, sid in sorted(ex.sessions)],
                             replacing=("charger_id", "session_id"))
            if new_marks:
                conn.execute(t.meter_marks.insert(), new_marks)
            if old_marks:
                _update_rows(conn, t.meter_marks, ("seq", "start_wh", "end_wh", "updated_height"),
                             ("charger_id", "meter_serial"), old_marks)
            if ex.operator_txs:
                conn.execute(t.operator_txs.insert(), [{"tx_hash": x, "height": h.height} for x in ex.operator_txs])
            refusals = [{"tx_hash": e.tx_hash, "height": h.height, "reason": e.detail["reason"],
                         "detail": e.detail["detail"]} for e in ex.effects if e.kind == "refused_action"]
            if refusals:
                conn.execute(t.operator_refusals.insert(), refusals)
            if ex.epoch is not None:  # with the proof a light client follows the change by (docs/consensus.md)
                conn.execute(t.validator_sets.insert(), [{
                    "seq": ex.epoch.seq, "height": h.height, "from_height": ex.epoch.from_height,
                    "record": ex.epoch.record(), "proof": dumps(ex.state_map.prove(VALSET_KEY)).decode()}])
            if ex.bindings:  # a wallet's unused binding code: replaced by a new one, deleted when used
                conn.execute(t.binding_codes.delete().where(t.binding_codes.c.wallet_id.in_(list(ex.bindings))))
                issued = [{"wallet_id": w, "binding_key": b[0], "expires": b[1], "height": h.height}
                          for w, b in ex.bindings.items() if b is not None]
                if issued:
                    conn.execute(t.binding_codes.insert(), issued)
            released_s = time_ms // 1000
            settled = [(released_s, "committed", e.auth_ref, e.charger_id) for e in ex.effects
                       if e.kind in ("receipt", "ocpp_bill") and e.auth_ref]
            if settled:
                # The holds the block's receipts settle end with the block, in its transaction: a
                # crash after the commit cannot keep a driver's money held (authz/holds.py).
                _update_rows(conn, t.authz_holds, ("released_s", "release_reason"), ("auth_ref", "charger_id"),
                             settled, also="released_s IS NULL")
            if ex.payments:
                conn.execute(t.payments.insert(), [{"reference": ref, "wallet_id": w, "height": h.height}
                                                   for ref, w in ex.payments.items()])

    # ---- reading -------------------------------------------------------------------------

    def load_state(self, state: LedgerState) -> None:
        """Fill a genesis-fresh `state` with what the database holds, and make the database its
        history: only the seq windows of the receipts come into memory."""
        state.history = StoredHistory(self.engine)
        with self.engine.connect() as conn:
            self._load_keys(conn, state)
            state.retired.update(conn.execute(sa.select(t.retired_chargers.c.charger_id)).scalars())
            for row in conn.execute(sa.select(t.wallets)):
                state.wallets[row.wallet_id] = Wallet(row.public_key and bytes(row.public_key), row.balance_fen)
            for row in conn.execute(sa.select(t.cards)):
                state.cards[row.uid] = row.wallet_id
                if row.blocked:
                    state.blocked_cards.add(row.uid)
            for row in conn.execute(sa.select(t.tariffs)):
                state.tariffs[(row.tariff_id, row.version)] = Tariff.from_doc(json.loads(row.doc))
                state.tariff_from[(row.tariff_id, row.version)] = row.effective_from
            state.seq_windows = self._seq_windows(conn)
            for row in conn.execute(sa.select(t.meter_marks)):
                state.meters[(row.charger_id, row.meter_serial)] = MeterMark(row.seq, row.start_wh, row.end_wh)
            for row in conn.execute(sa.select(t.payments.c.reference, t.payments.c.wallet_id)):
                state.payments[row.reference] = row.wallet_id
            for row in conn.execute(sa.select(t.binding_codes)):
                state.bindings[row.wallet_id] = (bytes(row.binding_key), row.expires)
            for row in conn.execute(sa.select(t.ocpp_chargers)):
                state.ocpp_chargers[row.charger_id] = OcppCharger(row.ocpp_version, row.password_digest, row.ocmf_key,
                                                                  json.loads(row.location) if row.location else None)
            last = conn.execute(sa.select(t.blocks).order_by(t.blocks.c.height.desc()).limit(1)).first()
            horizon = billed_horizon_ms(last.time_ms) if last is not None else 0
            for table in (t.ocpp_bills, t.snapshot_ocpp_bills):  # (the second: a node joined from a snapshot)
                for row in conn.execute(sa.select(table.c.charger_id, table.c.transaction_id, table.c.time_ms)
                                        .where(table.c.time_ms >= horizon)):
                    state.ocpp_bills[(row.charger_id, row.transaction_id)] = row.time_ms
            state.evidence.update(snapshot.evidence_of(self._snapshot_records(conn, "e/")))
            for row in conn.execute(sa.select(t.txs.c.data).where(t.txs.c.kind == "evidence")
                                    .order_by(t.txs.c.height, t.txs.c.idx)):
                a, b = evidence.decode(bytes(row.data))
                vid = state.schedule.at(a.height)[a.validator].id
                state.evidence[(vid, a.height, a.round, int(a.kind))] = (a.block_hash, b.block_hash)
            if last is not None:
                # only the actions still inside their window: the same set a running node keeps
                decided = (sa.select(t.operator_txs.c.tx_hash, t.blocks.c.time_ms)
                           .join(t.blocks, t.blocks.c.height == t.operator_txs.c.height)
                           .where(t.blocks.c.time_ms >= last.time_ms - DECIDED_KEPT_MS))
                sd = t.snapshot_decided.c
                decided_before = sa.select(sd.tx_hash, sd.time_ms).where(sd.time_ms >= last.time_ms - DECIDED_KEPT_MS)
                for row in (*conn.execute(decided), *conn.execute(decided_before)):
                    state.operator_txs[bytes(row.tx_hash)] = row.time_ms
        if last is not None:
            state.height = last.height
            state.last_hash = bytes(last.hash)
            state.last_time_ms = last.time_ms
        state.rebuild_map()
        if last is not None and state.state_root != bytes(last.state_root):
            raise StateRootMismatch(
                f"the state loaded from the database has root {state.state_root.hex()}, but its head block "
                f"{last.height} says {bytes(last.state_root).hex()}: the database does not hold the state its "
                f"chain produced (restore it, or check the chain with `bureau verify-chain`)")

    def load_keys(self, state: LedgerState) -> None:
        """Fill a genesis-fresh `state` with the chargers' and operators' keys and their rotations
        and the validator sets decided: enough for `state.charger_key_at` and `validators_at`
        (the audit's workers, whose findings the replay checks)."""
        with self.engine.connect() as conn:
            self._load_keys(conn, state)

    def _load_keys(self, conn, state: LedgerState, upto: int | None = None) -> None:
        """The keys and validator sets as block `upto` (default: the head) left them."""
        def until(column):
            return sa.true() if upto is None else column <= upto
        vs = t.validator_sets.c
        for row in conn.execute(sa.select(vs.record).where(until(vs.height)).order_by(vs.seq)):
            state.schedule.add(valset.Epoch.from_record(row.record))
        if self.snapshot_base() is not None:  # joined from a snapshot: the keys at its base, and those they replaced
            for key, value in self._snapshot_records(conn, "o/"):
                state.operators[key[2:]] = bytes.fromhex(json.loads(value)["public_key"])
            sk = t.snapshot_keys.c
            for row in conn.execute(sa.select(t.snapshot_keys).order_by(sk.until_height)):
                olds = state.charger_old_keys if row.role == "c" else state.operator_old_keys
                olds.setdefault(row.owner, []).append((row.until_height, bytes(row.public_key)))
        c = t.chargers.c
        for row in conn.execute(sa.select(c.charger_id, c.public_key).where(until(c.enrolled_height))):
            state.chargers[row.charger_id] = bytes(row.public_key)
        for table, keys, old_keys, who in ((t.charger_keys, state.chargers, state.charger_old_keys, "charger_id"),
                                           (t.operator_keys, state.operators, state.operator_old_keys,
                                            "operator_id")):
            for row in conn.execute(sa.select(table).where(until(table.c.height))
                                    .order_by(table.c.height)):  # as apply() made them
                owner = getattr(row, who)
                old_keys.setdefault(owner, []).append((row.height, keys[owner]))
                keys[owner] = bytes(row.public_key)

    @staticmethod
    def _seq_windows(conn, upto: int | None = None) -> SeqWindows:
        """The chargers' seq windows as block `upto` (default: the head) left them: those a
        snapshot brought (v2), with the receipts committed since (and those a v1 snapshot brought)."""
        windows = SeqWindows()
        for row in conn.execute(sa.select(t.snapshot_windows)):
            windows.merge(row.charger_id, row.high, int.from_bytes(row.bitmap, "little"))
        held = sa.select(t.receipts.c.charger_id, t.receipts.c.seq)
        if upto is not None:
            held = held.where(t.receipts.c.height <= upto)
        r = sa.union_all(held, sa.select(t.snapshot_receipts.c.charger_id, t.snapshot_receipts.c.seq)).subquery().c
        highest = sa.select(r.charger_id, sa.func.max(r.seq).label("high")).group_by(r.charger_id).subquery()
        in_window = (sa.select(r.charger_id, r.seq)
                     .join(highest, (highest.c.charger_id == r.charger_id)
                           & (r.seq > highest.c.high - SEQ_WINDOW)).order_by(r.charger_id, r.seq.desc()))
        for row in conn.execute(in_window):  # each charger's highest first: the rest fit in its window
            windows.add(row.charger_id, row.seq)
        return windows

    @staticmethod
    def _snapshot_records(conn, prefix: str) -> list[tuple[str, str]]:
        sr = t.snapshot_records.c
        return [(r.key, r.value) for r in conn.execute(sa.select(sr.key, sr.value).where(sr.key.startswith(prefix)))]

    # ---- state sync (ledger/snapshot.py) -------------------------------------------------

    def snapshot_base(self) -> int | None:
        """The height of the snapshot this node joined from (it holds blocks after it only);
        None for a node that holds its chain from the genesis. Never changes once set."""
        if self._base is None:
            if not sa.inspect(self.engine).has_table(t.snapshot_base.name):
                return None  # a database of an older schema opened as it is (an audit): from the genesis
            with self.engine.connect() as conn:
                self._base = conn.execute(sa.select(sa.func.max(t.snapshot_base.c.height))).scalar() or 0
        return self._base or None

    def first_kept(self) -> int:
        """The lowest height whose block (transactions too) this node holds."""
        return (self.snapshot_base() or 0) + 1

    def take_snapshot(self, state: LedgerState) -> snapshot.StateSnapshot:
        """The snapshot of the state's current map (read once, as the API reads it) and of what
        the tables held at that height."""
        at = state.snapshot
        found = self.header(at.height)
        if found is None:
            raise snapshot.SnapshotError("not_kept", "no certified block to take a snapshot at yet")
        header, cert = found
        with self.engine.connect() as conn:
            docs = self._tariff_docs(conn, state.genesis, at.height)
        changes = [c for c in self.validator_changes() if c["height"] <= at.height]
        return snapshot.take(at.state_map, at.height, header.encode().hex(), cert.decode(), changes, docs,
                             self.snapshot_history(state.genesis, at.height, header.time_ms))

    def snapshot_history(self, genesis, height: int, time_ms: int) -> dict:
        """What a snapshot at `height` (block time `time_ms`) needs that the map does not hold,
        read from the tables as that block left them (ledger/snapshot.py)."""
        keys = LedgerState(genesis)
        billed_since = billed_horizon_ms(time_ms)
        with self.engine.connect() as conn:
            self._load_keys(conn, keys, upto=height)
            windows = self._seq_windows(conn, upto=height)
            r, b, sr = t.receipts.c, t.blocks.c, t.snapshot_receipts.c
            receipts = sorted((row.charger_id, row.seq, row.receipt_id, row.time_ms) for row in (
                *conn.execute(sa.select(r.charger_id, r.seq, r.receipt_id, b.time_ms)
                              .join(t.blocks, b.height == r.height)
                              .where(r.height <= height, b.time_ms >= billed_since)),
                *conn.execute(sa.select(sr.charger_id, sr.seq, sr.receipt_id, sr.time_ms)
                              .where(sr.time_ms >= billed_since)))
                if windows.committed(row.charger_id, row.seq))  # below a window: refused by the floor
            bs = t.billed_sessions.c
            sessions = [(row.charger_id, bytes(row.session_id).hex(), row.time_ms)
                        for row in conn.execute(sa.select(bs.charger_id, bs.session_id, bs.time_ms)
                                                .where(bs.height <= height, bs.time_ms >= billed_since))]
            horizon = time_ms - DECIDED_KEPT_MS
            ot, b, sd = t.operator_txs.c, t.blocks.c, t.snapshot_decided.c
            decided = {bytes(row.tx_hash).hex(): row.time_ms for row in (
                *conn.execute(sa.select(sd.tx_hash, sd.time_ms).where(sd.time_ms >= horizon)),
                *conn.execute(sa.select(ot.tx_hash, b.time_ms).join(t.blocks, b.height == ot.height)
                              .where(ot.height <= height, b.time_ms >= horizon)))}
            ob, sob = t.ocpp_bills.c, t.snapshot_ocpp_bills.c
            ocpp_bills = [(row.charger_id, row.transaction_id, row.time_ms) for row in (
                *conn.execute(sa.select(ob.charger_id, ob.transaction_id, ob.time_ms)
                              .where(ob.height <= height, ob.time_ms >= billed_since)),
                *conn.execute(sa.select(sob.charger_id, sob.transaction_id, sob.time_ms)
                              .where(sob.time_ms >= billed_since)))]
        old_keys = [(role, owner, until, key.hex())
                    for role, olds in (("c", keys.charger_old_keys), ("o", keys.operator_old_keys))
                    for owner, entries in olds.items() for until, key in entries]
        return {"old_keys": old_keys, "windows": [(c, high, windows.gaps(high, bits)) for c, high, bits in windows.items()],
                "receipts": receipts, "sessions": sessions, "decided": sorted(decided.items()),
                "ocpp_bills": ocpp_bills}

    @staticmethod
    def _tariff_docs(conn, genesis, height: int) -> list[dict]:
        """Every tariff document published by block `height`, the genesis ones too."""
        tr = t.tariffs.c
        return [tf.to_doc() for tf in genesis.tariffs] + [
            json.loads(r.doc) for r in conn.execute(sa.select(tr.doc).where(tr.height <= height))]

    def stored_snapshot(self, genesis) -> snapshot.StateSnapshot | None:
        """The snapshot this node joined from, as stored: what its audit starts from."""
        base = self.snapshot_base()
        if base is None:
            return None
        header, cert = self.header(base)
        with self.engine.connect() as conn:
            recs = dict(self._snapshot_records(conn, ""))
            docs = self._tariff_docs(conn, genesis, base)
        changes = [c for c in self.validator_changes() if c["height"] <= base]
        snap = snapshot.StateSnapshot(base, header.encode().hex(), cert.decode(), changes, recs, docs,
                                      **self.snapshot_history(genesis, base, header.time_ms))
        return snap

    def load_snapshot(self, snap: snapshot.StateSnapshot, state: LedgerState, source: str) -> None:
        """Write a verified snapshot (`state` is `snapshot.restore` of it) into an empty
        database: the entities as of its height, its header and those of the validator changes,
        and its history; then `load_state` carries on from there."""
        base = snap.height
        with self.engine.begin() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(t.blocks)).scalar_one():
                raise snapshot.SnapshotError("has_chain", "the database already holds blocks; a snapshot loads "
                                                          "only into an empty one")
            heads = {c["height"]: (bytes.fromhex(c["header"]), c["certificate"].encode())
                     for c in snap.validator_changes}
            heads[base] = (bytes.fromhex(snap.header), snap.certificate.encode())
            for height, (raw, cert) in sorted(heads.items()):
                h = Header.decode(raw)
                conn.execute(t.blocks.insert(), {
                    "height": h.height, "hash": h.hash, "prev_hash": h.prev_hash, "time_ms": h.time_ms,
                    "tx_root": h.tx_root, "state_root": h.state_root, "proposer": h.proposer,
                    "tx_count": h.tx_count, "header": raw, "certificate": cert})
            conn.execute(t.snapshot_base.insert(), {"height": base, "source": source, "loaded_s": int(time.time())})
            conn.execute(t.snapshot_records.insert(), [{"key": k, "value": v} for k, v in snap.records.items()])
            for entry in snap.validator_changes:
                epoch = valset.Epoch.from_record(entry["proof"]["value"])
                conn.execute(t.validator_sets.insert(), {"seq": epoch.seq, "height": entry["height"],
                                                         "from_height": epoch.from_height, "record": epoch.record(),
                                                         "proof": dumps(entry["proof"]).decode()})
            if state.chargers:
                conn.execute(t.chargers.insert(), [{"charger_id": c, "public_key": k, "enrolled_height": base}
                                                   for c, k in state.chargers.items()])
            if state.retired:
                conn.execute(t.retired_chargers.insert(), [{"charger_id": c, "height": base} for c in state.retired])
            if state.wallets:
                conn.execute(t.wallets.insert(), [{"wallet_id": w, "public_key": v.public_key,
                                                   "balance_fen": v.balance, "updated_height": base}
                                                  for w, v in state.wallets.items()])
            if state.ocpp_chargers:
                conn.execute(t.ocpp_chargers.insert(), [
                    {"charger_id": c, "ocpp_version": cp.ocpp_version, "password_digest": cp.password_digest,
                     "ocmf_key": cp.ocmf_key, "location": cp.location and dumps(cp.location).decode(),
                     "enrolled_height": base} for c, cp in state.ocpp_chargers.items()])
            if state.cards:
                conn.execute(t.cards.insert(), [{"uid": c, "wallet_id": w, "blocked": c in state.blocked_cards}
                                                for c, w in state.cards.items()])
            genesis_tariffs = {(tf.tariff_id, tf.version) for tf in state.genesis.tariffs}
            tariffs = [{"tariff_id": tid, "version": v, "doc": dumps(tf.to_doc()).decode(), "height": base,
                        "effective_from": state.tariff_from[(tid, v)]}
                       for (tid, v), tf in state.tariffs.items() if (tid, v) not in genesis_tariffs]
            if tariffs:
                conn.execute(t.tariffs.insert(), tariffs)
            if state.meters:
                conn.execute(t.meter_marks.insert(), [{"charger_id": c, "meter_serial": m, "seq": v.seq,
                                                       "start_wh": v.start_wh, "end_wh": v.end_wh,
                                                       "updated_height": base} for (c, m), v in state.meters.items()])
            if state.payments:
                conn.execute(t.payments.insert(), [{"reference": ref, "wallet_id": w, "height": base}
                                                   for ref, w in state.payments.items()])
            if state.bindings:
                conn.execute(t.binding_codes.insert(), [{"wallet_id": w, "binding_key": b[0], "expires": b[1],
                                                         "height": base} for w, b in state.bindings.items()])
            windows = state.seq_windows.items()
            if windows:
                _insert_rows(conn, t.snapshot_windows, ("charger_id", "high", "bitmap"),
                             [(c, high, bits.to_bytes((SEQ_WINDOW + 7) // 8, "little")) for c, high, bits in windows])
            if snap.receipts:
                _insert_rows(conn, t.snapshot_receipts, ("charger_id", "seq", "receipt_id", "time_ms"),
                             sorted(set(snap.receipts)))
            if snap.sessions:
                _insert_rows(conn, t.billed_sessions, ("charger_id", "session_id", "height", "time_ms"),
                             [(c, bytes.fromhex(sid), base, at_ms) for c, sid, at_ms in sorted(set(snap.sessions))])
            if snap.ocpp_bills:
                _insert_rows(conn, t.snapshot_ocpp_bills, ("charger_id", "transaction_id", "time_ms"),
                             sorted(set(snap.ocpp_bills)))
            if snap.old_keys:
                conn.execute(t.snapshot_keys.insert(), [{"role": r, "owner": o, "until_height": u,
                                                         "public_key": bytes.fromhex(k)}
                                                        for r, o, u, k in snap.old_keys])
            if state.operator_txs:
                conn.execute(t.snapshot_decided.insert(), [{"tx_hash": h, "time_ms": ms}
                                                           for h, ms in state.operator_txs.items()])
        self._base = None

    def validator_changes(self) -> list[dict]:
        """Every validator-set change decided on chain, oldest first: the deciding block's height,
        header and certificate, and the state proof of its v/set record (docs/consensus.md)."""
        vs, b = t.validator_sets.c, t.blocks.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(vs.height, vs.proof, b.header, b.certificate)
                                .join(t.blocks, b.height == vs.height).order_by(vs.seq)).all()
        return [{"height": r.height, "header": bytes(r.header).hex(), "certificate": bytes(r.certificate).decode(),
                 "proof": json.loads(r.proof)} for r in rows]

    def head_height(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.blocks.c.height), 0))).scalar_one()

    def header(self, height: int) -> tuple[Header, bytes] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.blocks.c.header, t.blocks.c.certificate)
                               .where(t.blocks.c.height == height)).first()
        return (Header.decode(bytes(row.header)), bytes(row.certificate)) if row else None

    def block(self, height: int) -> tuple[Block, bytes] | None:
        """None also below `first_kept()`: a joined node holds some headers there, not blocks."""
        if height < self.first_kept():
            return None
        found = self.header(height)
        if found is None:
            return None
        header, cert = found
        with self.engine.connect() as conn:
            data = [bytes(r.data) for r in conn.execute(sa.select(t.txs.c.data).where(t.txs.c.height == height)
                                                         .order_by(t.txs.c.idx))]
        return Block(header, tuple(data)), cert

    def blocks(self, start: int = 1, end: int | None = None, batch: int = 64):
        """Every stored block from `start` on, in order, with its certificate; read `batch`
        blocks at a time (two queries), ending at the first height not held."""
        if start < self.first_kept():
            return  # a joined node holds headers there, not blocks (as `block`)
        height = start
        while end is None or height <= end:
            last = height + batch - 1 if end is None else min(end, height + batch - 1)
            with self.engine.connect() as conn:
                headers = conn.execute(sa.select(t.blocks.c.height, t.blocks.c.header, t.blocks.c.certificate)
                                       .where(t.blocks.c.height.between(height, last))
                                       .order_by(t.blocks.c.height)).all()
                txs: dict[int, list[bytes]] = {}
                for row in conn.execute(sa.select(t.txs.c.height, t.txs.c.data)
                                        .where(t.txs.c.height.between(height, last))
                                        .order_by(t.txs.c.height, t.txs.c.idx)):
                    txs.setdefault(row.height, []).append(bytes(row.data))
            for row in headers:
                if row.height != height:
                    return
                yield Block(Header.decode(bytes(row.header)), tuple(txs.get(height, ()))), bytes(row.certificate)
                height += 1
            if height <= last:
                return

    def receipt_location(self, charger_id: str, seq: int):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.receipts).where(t.receipts.c.charger_id == charger_id,
                                                            t.receipts.c.seq == seq)).first()

    def receipt_block(self, charger_id: str, seq: int) -> tuple[int, bytes] | None:
        """(height, block hash) of the block holding the committed receipt (charger_id, seq)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.receipts.c.height, t.blocks.c.hash)
                               .join(t.blocks, t.blocks.c.height == t.receipts.c.height)
                               .where(t.receipts.c.charger_id == charger_id, t.receipts.c.seq == seq)).first()
        return (row.height, bytes(row.hash)) if row else None

    def wallet_history(self, wallet_id: str, limit: int = 50, before_id: int | None = None) -> list:
        q = sa.select(t.wallet_entries).where(t.wallet_entries.c.wallet_id == wallet_id)
        if before_id is not None:
            q = q.where(t.wallet_entries.c.id < before_id)
        q = q.order_by(t.wallet_entries.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(q))

    def receipt_envelope(self, height: int, idx: int) -> bytes | None:
        with self.engine.connect() as conn:
            data = conn.execute(sa.select(t.txs.c.data).where(t.txs.c.height == height, t.txs.c.idx == idx)).scalar()
        if data is None or data[0] != KIND_RECEIPT:
            return None
        return bytes(data[1:])

    def operator_outcome(self, tx_hash: bytes) -> tuple[str, str, str, int] | None:
        """("committed", "", "", height) or ("refused", reason, detail, height) for an action
        decided on the chain at that block height."""
        # The decision first: its refusal, written in the same transaction, is then visible too
        # (the two reads are not one snapshot; the other order could see a block land between them).
        with self.engine.connect() as conn:
            decided = conn.execute(sa.select(t.operator_txs.c.height).where(t.operator_txs.c.tx_hash == tx_hash)).first()
            if decided is None:
                return None
            refused = conn.execute(sa.select(t.operator_refusals).where(t.operator_refusals.c.tx_hash == tx_hash)).first()
        if refused is not None:
            return "refused", refused.reason, refused.detail, refused.height
        return "committed", "", "", decided.height

    def ocpp_bill_location(self, tx_hash: bytes):
        """The committed OCPP bill (its ocpp_bills row) of the transaction with hash `tx_hash`."""
        b, x = t.ocpp_bills.c, t.txs.c
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.ocpp_bills).join(t.txs, (x.height == b.height) & (x.idx == b.idx))
                                .where(x.tx_hash == tx_hash)).first()

    def count_receipts(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t.receipts)).scalar_one()
