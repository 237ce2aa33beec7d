"""State sync and OCPP together: the (charge point, transaction id) pairs billed in the blocks a
node that joined from a snapshot does not hold, so it refuses a second bill for them as every
other bureau does. Empty on a node that holds its chain from the genesis.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshot_ocpp_bills",
        sa.Column("charger_id", sa.String(32),
                  sa.ForeignKey("ocpp_chargers.charger_id", name="snapshot_ocpp_bills_charger_id_fkey")),
        sa.Column("transaction_id", sa.String(36)),
        sa.PrimaryKeyConstraint("charger_id", "transaction_id", name="snapshot_ocpp_bills_pkey"),
    )


def downgrade() -> None:
    op.drop_table("snapshot_ocpp_bills")
