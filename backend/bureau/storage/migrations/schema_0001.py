"""The schema of release 0.1, frozen: what its create_all made (storage/tables.py and
authz/holds.py of that release, unnamed constraints included). Revision 0001 creates it, and a
database made by that release before it had migrations is adopted by creating whatever of it is
missing, as that release did, and stamping 0001. Never edit: a change is a new revision."""

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

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
    Column("height", BigInteger, primary_key=True, autoincrement=False),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("tx_hash", LargeBinary(32), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

receipts = Table(
    "receipts", metadata,
    Column("charger_id", String(32), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("receipt_id", String(64), nullable=False, unique=True),
    Column("wallet_id", String(32), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("energy_wh", BigInteger, nullable=False),
    Column("height", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
)

wallets = Table(
    "wallets", metadata,
    Column("wallet_id", String(32), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("balance_fen", BigInteger, nullable=False),
    Column("updated_height", BigInteger, nullable=False),
)

wallet_entries = Table(
    "wallet_entries", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("wallet_id", String(32), nullable=False),
    Column("height", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("delta_fen", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("tx_hash", LargeBinary(32), nullable=False),
    Column("charger_id", String(32)),
    Column("seq", BigInteger),
    Column("energy_wh", BigInteger, nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Index("ix_wallet_entries_wallet", "wallet_id", "id"),
)

chargers = Table(
    "chargers", metadata,
    Column("charger_id", String(32), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("enrolled_height", BigInteger, nullable=False),
)

retired_chargers = Table(
    "retired_chargers", metadata,
    Column("charger_id", String(32), primary_key=True),
    Column("height", BigInteger, nullable=False),
)

cards = Table(
    "cards", metadata,
    Column("uid", String(32), primary_key=True),
    Column("wallet_id", String(32), nullable=False),
)

tariffs = Table(
    "tariffs", metadata,
    Column("tariff_id", String(32), primary_key=True),
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("doc", Text, nullable=False),
    Column("height", BigInteger, nullable=False),
)

operator_txs = Table(  # every decided operator action: committed, or refused in its block
    "operator_txs", metadata,
    Column("tx_hash", LargeBinary(32), primary_key=True),
    Column("height", BigInteger, nullable=False),
)

operator_refusals = Table(  # the decided actions that were refused, with the reason
    "operator_refusals", metadata,
    Column("tx_hash", LargeBinary(32), primary_key=True),
    Column("height", BigInteger, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
)

payments = Table(  # payment references credited by top-ups: each one once
    "payments", metadata,
    Column("reference", String(64), primary_key=True),
    Column("wallet_id", String(32), nullable=False),
    Column("height", BigInteger, nullable=False),
)

authz_holds = Table(
    "authz_holds", metadata,
    Column("auth_ref", String(64), primary_key=True),
    Column("wallet_id", String(32), nullable=False, index=True),
    Column("charger_id", String(32), nullable=False),
    Column("method", String(8), nullable=False),
    Column("token", String(64), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("created_s", BigInteger, nullable=False),
    Column("expires_s", BigInteger, nullable=False),
    Column("released_s", BigInteger, nullable=True, index=True),
    Column("release_reason", String(16), nullable=True),
)
