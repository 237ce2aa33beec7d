"""OCPP charge points: `ocpp_chargers` (enroll_ocpp_charger) and `ocpp_bills` (tx kind 4,
docs/ocpp.md), and the node's own `ocpp_transactions` in progress; an open hold's `charger_id` may now name an OCPP charge point, so its foreign key
to `chargers` goes.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocpp_chargers",
        sa.Column("charger_id", sa.String(32), primary_key=True),
        sa.Column("ocpp_version", sa.String(8), nullable=False),
        sa.Column("password_digest", sa.String(160), nullable=False),
        sa.Column("ocmf_key", sa.Text, nullable=True),
        sa.Column("location", sa.Text, nullable=True),
        sa.Column("enrolled_height", sa.BigInteger, sa.ForeignKey("blocks.height", name="ocpp_chargers_enrolled_height_fkey"),
                  nullable=False),
    )
    op.create_table(
        "ocpp_bills",
        sa.Column("charger_id", sa.String(32), sa.ForeignKey("ocpp_chargers.charger_id",
                                                            name="ocpp_bills_charger_id_fkey"), primary_key=True),
        sa.Column("transaction_id", sa.String(36), primary_key=True),
        sa.Column("wallet_id", sa.String(32), sa.ForeignKey("wallets.wallet_id", name="ocpp_bills_wallet_id_fkey"),
                  nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("energy_wh", sa.BigInteger, nullable=False),
        sa.Column("verified_by", sa.String(32), nullable=False),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("height", sa.BigInteger, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(["height", "idx"], ["txs.height", "txs.idx"], name="ocpp_bills_height_idx_fkey"),
        sa.PrimaryKeyConstraint("charger_id", "transaction_id", name="ocpp_bills_pkey"),
    )
    op.create_index("ix_ocpp_bills_time", "ocpp_bills", ["time_ms"])
    op.create_table(
        "ocpp_transactions",
        sa.Column("charger_id", sa.String(32), primary_key=True),
        sa.Column("transaction_id", sa.String(36), primary_key=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("updated_s", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("charger_id", "transaction_id", name="ocpp_transactions_pkey"),
    )
    with op.batch_alter_table("authz_holds") as batch:
        batch.drop_constraint("authz_holds_charger_id_fkey", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("authz_holds") as batch:
        batch.create_foreign_key("authz_holds_charger_id_fkey", "chargers", ["charger_id"], ["charger_id"])
    op.drop_table("ocpp_transactions")
    op.drop_index("ix_ocpp_bills_time", "ocpp_bills")
    op.drop_table("ocpp_bills")
    op.drop_table("ocpp_chargers")
