"""State sync: the tables of a node that joined from a snapshot (ledger/snapshot.py): its base
height, the state-map records at it, and the history of the blocks it does not hold (receipt
ids, replaced keys, decided actions). Empty on a node that holds its chain from the genesis; no
existing row changes.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshot_base",
        sa.Column("height", sa.BigInteger, sa.ForeignKey("blocks.height", name="snapshot_base_height_fkey"),
                  autoincrement=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("loaded_s", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("height", name="snapshot_base_pkey"),
    )
    op.create_table(
        "snapshot_records",
        sa.Column("key", sa.Text),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="snapshot_records_pkey"),
    )
    op.create_table(
        "snapshot_receipts",
        sa.Column("charger_id", sa.String(32),
                  sa.ForeignKey("chargers.charger_id", name="snapshot_receipts_charger_id_fkey")),
        sa.Column("seq", sa.BigInteger, autoincrement=False),
        sa.Column("receipt_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("charger_id", "seq", name="snapshot_receipts_pkey"),
    )
    op.create_table(
        "snapshot_keys",
        sa.Column("role", sa.String(1)),
        sa.Column("owner", sa.String(64)),
        sa.Column("until_height", sa.BigInteger, autoincrement=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("role", "owner", "until_height", name="snapshot_keys_pkey"),
    )
    op.create_table(
        "snapshot_decided",
        sa.Column("tx_hash", sa.LargeBinary(32)),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tx_hash", name="snapshot_decided_pkey"),
    )


def downgrade() -> None:
    for table in ("snapshot_decided", "snapshot_keys", "snapshot_receipts", "snapshot_records", "snapshot_base"):
        op.drop_table(table)
