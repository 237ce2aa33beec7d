"""Foreign keys wherever a row names another; the open holds found by one partial index.

Release 0.1 kept the holds table in a MetaData of its own, made by create_all beside the
ledger's; now both are one schema. Rows that violate a key stop the upgrade: PostgreSQL refuses
the constraint, and on SQLite storage/migrate.py runs PRAGMA foreign_key_check before it
commits.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# (table, columns, referred table, referred columns)
FOREIGN_KEYS = [
    ("txs", ["height"], "blocks", ["height"]),
    ("chargers", ["enrolled_height"], "blocks", ["height"]),
    ("retired_chargers", ["charger_id"], "chargers", ["charger_id"]),
    ("retired_chargers", ["height"], "blocks", ["height"]),
    ("wallets", ["updated_height"], "blocks", ["height"]),
    ("receipts", ["charger_id"], "chargers", ["charger_id"]),
    ("receipts", ["wallet_id"], "wallets", ["wallet_id"]),
    ("receipts", ["height", "idx"], "txs", ["height", "idx"]),
    ("wallet_entries", ["wallet_id"], "wallets", ["wallet_id"]),
    ("wallet_entries", ["height", "idx"], "txs", ["height", "idx"]),
    ("cards", ["wallet_id"], "wallets", ["wallet_id"]),
    ("tariffs", ["height"], "blocks", ["height"]),
    ("operator_txs", ["tx_hash"], "txs", ["tx_hash"]),
    ("operator_txs", ["height"], "blocks", ["height"]),
    ("operator_refusals", ["tx_hash"], "operator_txs", ["tx_hash"]),
    ("operator_refusals", ["height"], "blocks", ["height"]),
    ("payments", ["wallet_id"], "wallets", ["wallet_id"]),
    ("payments", ["height"], "blocks", ["height"]),
    ("authz_holds", ["wallet_id"], "wallets", ["wallet_id"]),
    ("authz_holds", ["charger_id"], "chargers", ["charger_id"]),
]
OPEN_HOLDS = sa.text("released_s IS NULL")
# Release 0.1 left its unique constraints unnamed; PostgreSQL named them so, and SQLite now
# gets the same names (tables.NAMING) when these tables are rebuilt.
NAMING = {"uq": "%(table_name)s_%(column_0_N_name)s_key", "fk": "%(table_name)s_%(column_0_N_name)s_fkey"}
UNNAMED_UNIQUE = ["blocks", "txs", "receipts"]


def _name(table: str, columns: list[str]) -> str:
    return f"{table}_{'_'.join(columns)}_fkey"  # tables.NAMING, PostgreSQL's own form


def _tables() -> list[str]:
    return list(dict.fromkeys(UNNAMED_UNIQUE + [t for t, *_ in FOREIGN_KEYS]))


def _batch(table: str):
    """SQLite: the table is rebuilt (with its keys, and names for its unique constraints)."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    return op.batch_alter_table(table, naming_convention=NAMING,
                                recreate="always" if sqlite and table in UNNAMED_UNIQUE else "auto")


def upgrade() -> None:
    op.drop_index("ix_authz_holds_wallet_id", "authz_holds")  # no query looks holds up by wallet
    op.drop_index("ix_authz_holds_released_s", "authz_holds")
    for table in _tables():
        with _batch(table) as batch:
            for t, cols, referred, referred_cols in FOREIGN_KEYS:
                if t == table:
                    batch.create_foreign_key(_name(t, cols), referred, cols, referred_cols)
    op.create_index("ix_authz_holds_open", "authz_holds", ["expires_s"], sqlite_where=OPEN_HOLDS,
                    postgresql_where=OPEN_HOLDS)


def downgrade() -> None:
    op.drop_index("ix_authz_holds_open", "authz_holds")
    for table in reversed(_tables()):
        with _batch(table) as batch:
            for t, cols, _referred, _referred_cols in FOREIGN_KEYS:
                if t == table:
                    batch.drop_constraint(_name(t, cols), type_="foreignkey")
    op.create_index("ix_authz_holds_released_s", "authz_holds", ["released_s"])
    op.create_index("ix_authz_holds_wallet_id", "authz_holds", ["wallet_id"])
