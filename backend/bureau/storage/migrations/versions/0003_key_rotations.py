"""Key rotations: `charger_keys` and `operator_keys` hold each rotated key with the height of the
block that rotated it (docs/ledger.md, rotate_charger_key and rotate_operator_key). New tables
and the kind of a transaction or wallet entry widened to 32 characters, for the actions'
names. Existing rows stay as they are (SQLite rebuilds the two tables, with their keys).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


WIDENED = ("txs", "wallet_entries")


def upgrade() -> None:
    for table in WIDENED:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("kind", type_=sa.String(32), existing_type=sa.String(16), existing_nullable=False)
    op.create_table(
        "charger_keys",
        sa.Column("charger_id", sa.String(32), sa.ForeignKey("chargers.charger_id", name="charger_keys_charger_id_fkey"),
                  primary_key=True),
        sa.Column("height", sa.BigInteger, sa.ForeignKey("blocks.height", name="charger_keys_height_fkey"),
                  primary_key=True, autoincrement=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("charger_id", "height", name="charger_keys_pkey"),
    )
    op.create_table(
        "operator_keys",
        sa.Column("operator_id", sa.String(64), primary_key=True),
        sa.Column("height", sa.BigInteger, sa.ForeignKey("blocks.height", name="operator_keys_height_fkey"),
                  primary_key=True, autoincrement=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("operator_id", "height", name="operator_keys_pkey"),
    )


def downgrade() -> None:
    op.drop_table("operator_keys")
    op.drop_table("charger_keys")
    for table in WIDENED:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("kind", type_=sa.String(16), existing_type=sa.String(32), existing_nullable=False)
