"""The schema: every table of a node's database in one MetaData. SQLite by default, PostgreSQL
in production; the same Core tables serve both. Changes go through a migration
(storage/migrations, docs/storage.md); a test checks that these tables match its head.

Rows that name another row carry a foreign key to it, so a database never holds a receipt
without its transaction, a transaction without its block or an entry without its wallet.
Nothing is ever deleted from the chain tables: the keys guard writes, and need no index of
their own for cascades."""

from sqlalchemy import (BigInteger, Boolean, Column, ForeignKey, ForeignKeyConstraint, Index, Integer, LargeBinary,
                        MetaData, String, Table, Text, false, text)

# PostgreSQL's own names for the constraints, so a database made by create_all before the
# schema was migrated (unnamed constraints) and one made by the migrations agree on every name.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

metadata = MetaData(naming_convention=NAMING)

blocks = Table(
    "blocks", metadata,
    Column("height", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False, unique=True),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("tx_root", LargeBinary(32), nullable=False),
    Column("state_root", LargeBinary(32), nullable=False),
    Column("proposer", String(64), nullable=False),
    Column("tx_count", Integer, nullable=False),
    Column("header", LargeBinary, nullable=False),
    Column("certificate", LargeBinary, nullable=False),
)

txs = Table(
    "txs", metadata,
    Column("height", BigInteger, ForeignKey("blocks.height"), primary_key=True, autoincrement=False),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("tx_hash", LargeBinary(32), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # an effect's kind: receipt or the action's name
    Column("data", LargeBinary, nullable=False),
)

chargers = Table(
    "chargers", metadata,
    Column("charger_id", String(32), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("enrolled_height", BigInteger, ForeignKey("blocks.height"), nullable=False),
)

wallets = Table(
    "wallets", metadata,
    Column("wallet_id", String(32), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=True),  # none until a phone is bound
    Column("balance_fen", BigInteger, nullable=False),
    Column("updated_height", BigInteger, ForeignKey("blocks.height"), nullable=False),
)

receipts = Table(
    "receipts", metadata,
    Column("charger_id", String(32), ForeignKey("chargers.charger_id"), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("receipt_id", String(64), nullable=False, unique=True),
    Column("wallet_id", String(32), ForeignKey("wallets.wallet_id"), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("energy_wh", BigInteger, nullable=False),
    Column("height", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    ForeignKeyConstraint(["height", "idx"], ["txs.height", "txs.idx"]),
)

wallet_entries = Table(
    "wallet_entries", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("wallet_id", String(32), ForeignKey("wallets.wallet_id"), nullable=False),
    Column("height", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("kind", String(32), nullable=False),  # an effect's kind: receipt or the action's name
    Column("delta_fen", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("tx_hash", LargeBinary(32), nullable=False),
    Column("charger_id", String(32)),
    Column("seq", BigInteger),
    Column("energy_wh", BigInteger, nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(["height", "idx"], ["txs.height", "txs.idx"]),
    Index("ix_wallet_entries_wallet", "wallet_id", "id"),  # a wallet's history, newest first, paged by id
)

retired_chargers = Table(
    "retired_chargers", metadata,
    Column("charger_id", String(32), ForeignKey("chargers.charger_id"), primary_key=True),
    Column("height", BigInteger, ForeignKey("blocks.height"), nullable=False),
)

charger_keys = Table(  # key rotations: the charger's key from the block after `height` on
    "charger_keys", metadata,
    Column("charger_id", String(32), ForeignKey("chargers.charger_id"), primary_key=True),
    Column("height", BigInteger, ForeignKey("blocks.height"), primary_key=True, autoincrement=False),
    Column("public_key", LargeBinary(32), nullable=False),
)

operator_keys = Table(  # operator key rotations, over the genesis operators' keys
    "operator_keys", metadata,
    Column("operator_id", String(64), primary_key=True),
    Column("height", BigInteger, ForeignKey("blocks.height"), primary_key=True, autoincrement=False),
    Column("public_key", LargeBinary(32), nullable=False),
)

cards = Table(
    "cards", metadata,
    Column("uid", String(32), primary_key=True),
    Column("wallet_id", String(32), ForeignKey("wallets.wallet_id"), nullable=False),
    Column("blocked", Boolean, nullable=False, server_default=false()),  # refused at authorization
)

tariffs = Table(
    "tariffs", metadata,
    Column("tariff_id", String(32), primary_key=True),
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("doc", Text, nullable=False),
    Column("height", BigInteger, ForeignKey("blocks.height"), nullable=False),
    Column("effective_from", BigInteger, nullable=False),  # unix s: receipts started from then on name it
)

operator_txs = Table(  # every decided operator action: committed, or refused in its block
    "operator_txs", metadata,
    Column("tx_hash", LargeBinary(32), ForeignKey("txs.tx_hash"), primary_key=True),
    Column("height", BigInteger, ForeignKey("blocks.height"), nullable=False),
)

operator_refusals = Table(  # the decided actions that were refused, with the reason
    "operator_refusals", metadata,
    Column("tx_hash", LargeBinary(32), ForeignKey("operator_txs.tx_hash"), primary_key=True),
    Column("height", BigInteger, ForeignKey("blocks.height"), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
)

payments = Table(  # payment references credited by top-ups: each one once
    "payments", metadata,
    Column("reference", String(64), primary_key=True),
    Column("wallet_id", String(32), ForeignKey("wallets.wallet_id"), nullable=False),
    Column("height", BigInteger, ForeignKey("blocks.height"), nullable=False),
)

binding_codes = Table(  # each wallet's unused binding code: replaced by a new one, deleted when used
    "binding_codes", metadata,
    Column("wallet_id", String(32), ForeignKey("wallets.wallet_id"), primary_key=True),
    Column("binding_key", LargeBinary(32), nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("height", BigInteger, ForeignKey("blocks.height"), nullable=False),
)

billed_sessions = Table(  # the session id of every committed receipt: each session is billed once
    "billed_sessions", metadata,
    Column("charger_id", String(32), ForeignKey("chargers.charger_id"), primary_key=True),
    Column("session_id", LargeBinary(16), primary_key=True),
    Column("height", BigInteger, ForeignKey("blocks.height"), nullable=False),
    # the billing block's time: `session_billed` counts the bills since the billing horizon (on a
    # node joined from a snapshot, a row of the blocks not held carries the snapshot's height)
    Column("time_ms", BigInteger, nullable=False),
)

meter_marks = Table(  # per charger and meter, the readings of its highest-seq committed receipt
    "meter_marks", metadata,
    Column("charger_id", String(32), ForeignKey("chargers.charger_id"), primary_key=True),
    Column("meter_serial", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("start_wh", BigInteger, nullable=False),
    Column("end_wh", BigInteger, nullable=False),
    Column("updated_height", BigInteger, ForeignKey("blocks.height"), nullable=False),
)

ocpp_chargers = Table(  # OCPP charge points (enroll_ocpp_charger): their password only as its digest
    "ocpp_chargers", metadata,
    Column("charger_id", String(32), primary_key=True),
    Column("ocpp_version", String(8), nullable=False),
    Column("password_digest", String(160), nullable=False),
    Column("ocmf_key", Text, nullable=True),  # hex DER SubjectPublicKeyInfo of the meter's P-256 key
    Column("location", Text, nullable=True),  # canonical JSON of its location (ocpi/site.py)
    Column("enrolled_height", BigInteger, ForeignKey("blocks.height"), nullable=False),
)

ocpp_bills = Table(  # every committed OCPP bill (tx kind 4): one per (charge point, transaction id) within
    "ocpp_bills", metadata,  # the billing horizon; an id a charge point repeats after it is another bill, kept too
    Column("charger_id", String(32), ForeignKey("ocpp_chargers.charger_id"), primary_key=True),
    Column("transaction_id", String(36), primary_key=True),
    Column("wallet_id", String(32), ForeignKey("wallets.wallet_id"), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("energy_wh", BigInteger, nullable=False),
    Column("verified_by", String(32), nullable=False),  # "ocmf" (the meter's signature) or the attesting bureau
    Column("time_ms", BigInteger, nullable=False),  # the block's: OCPI CDRs are listed by it
    Column("height", BigInteger, primary_key=True, autoincrement=False),
    Column("idx", Integer, nullable=False),
    ForeignKeyConstraint(["height", "idx"], ["txs.height", "txs.idx"]),
    Index("ix_ocpp_bills_time", "time_ms"),
)

validator_sets = Table(  # each validator set decided on chain (change_validators), with its record's proof
    "validator_sets", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("height", BigInteger, ForeignKey("blocks.height"), nullable=False),  # the block that decided it
    Column("from_height", BigInteger, nullable=False),
    Column("record", Text, nullable=False),  # the v/set record after that block (docs/state.md)
    Column("proof", Text, nullable=False),   # its state proof JSON v1 against that block's state root
)

# OCPP transactions in progress on this node (ocpp/store.py): written by this node alone, never part
# of the chain; a row goes when the transaction's bill commits.
ocpp_transactions = Table(
    "ocpp_transactions", metadata,
    Column("charger_id", String(32), primary_key=True),
    Column("transaction_id", String(36), primary_key=True),
    Column("doc", Text, nullable=False),  # JSON of ocpp.core.Transaction
    Column("updated_s", BigInteger, nullable=False),
)

# Open authorizations (authz/holds.py): written by this node alone, never part of the chain.
# `charger_id` names one of our chargers or an OCPP charge point (one namespace, ledger/state.py).
authz_holds = Table(
    "authz_holds", metadata,
    Column("auth_ref", String(64), primary_key=True),
    Column("wallet_id", String(32), ForeignKey("wallets.wallet_id"), nullable=False),
    Column("charger_id", String(32), nullable=False),
    Column("method", String(8), nullable=False),
    Column("token", String(64), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("created_s", BigInteger, nullable=False),
    Column("expires_s", BigInteger, nullable=False),
    Column("released_s", BigInteger, nullable=True),
    Column("release_reason", String(16), nullable=True),
    # the holds still open, read at every start; released ones pile up and are never read again
    Index("ix_authz_holds_open", "expires_s", sqlite_where=text("released_s IS NULL"),
          postgresql_where=text("released_s IS NULL")),
)

# A node that joined from a snapshot (ledger/snapshot.py, docs/storage.md): the state at the
# snapshot's height and the history the map does not hold. Blocks up to that height are not held
# (only the headers of that block and of the blocks that decided validator sets).
snapshot_base = Table(
    "snapshot_base", metadata,
    Column("height", BigInteger, ForeignKey("blocks.height"), primary_key=True, autoincrement=False),
    Column("source", Text, nullable=False),  # the bureau it came from, and the one that cross-checked it
    Column("loaded_s", BigInteger, nullable=False),
)

snapshot_records = Table(  # every state-map record at the snapshot's height
    "snapshot_records", metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

snapshot_receipts = Table(  # receipts of the blocks not held, in their window since the horizon: duplicate or
    "snapshot_receipts", metadata,  # seq_reused
    Column("charger_id", String(32), ForeignKey("chargers.charger_id"), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("receipt_id", String(64), nullable=False),
    Column("time_ms", BigInteger, nullable=False),  # its block's time
)

snapshot_windows = Table(  # each charger's seq window at the snapshot's height (ledger/history.py SeqWindows)
    "snapshot_windows", metadata,
    Column("charger_id", String(32), ForeignKey("chargers.charger_id"), primary_key=True),
    Column("high", BigInteger, nullable=False),  # the highest committed seq
    Column("bitmap", LargeBinary, nullable=False),  # bit i (little-endian): seq high - i is committed
)

snapshot_keys = Table(  # keys replaced by rotations in the blocks not held, each with its last height
    "snapshot_keys", metadata,
    Column("role", String(1), primary_key=True),  # c: a charger's, o: an operator's
    Column("owner", String(64), primary_key=True),
    Column("until_height", BigInteger, primary_key=True, autoincrement=False),
    Column("public_key", LargeBinary(32), nullable=False),
)

snapshot_ocpp_bills = Table(  # OCPP bills of the blocks not held, since the horizon: one bill per (charge
    "snapshot_ocpp_bills", metadata,  # point, transaction id)
    Column("charger_id", String(32), ForeignKey("ocpp_chargers.charger_id"), primary_key=True),
    Column("transaction_id", String(36), primary_key=True),
    Column("time_ms", BigInteger, nullable=False),  # its block's time
)

snapshot_decided = Table(  # operator and driver actions decided in the blocks not held, within their window
    "snapshot_decided", metadata,
    Column("tx_hash", LargeBinary(32), primary_key=True),
    Column("time_ms", BigInteger, nullable=False),
)
