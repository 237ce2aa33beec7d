"""Binding a phone: `wallets.public_key` may be empty (a wallet opened before its driver's phone
is bound) and `binding_codes` holds each wallet's unused binding code, its binding key and expiry
(docs/ledger.md, issue_binding_code and bind_phone). No existing row changes.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.alter_column("public_key", existing_type=sa.LargeBinary(32), nullable=True)
    op.create_table(
        "binding_codes",
        sa.Column("wallet_id", sa.String(32), sa.ForeignKey("wallets.wallet_id", name="binding_codes_wallet_id_fkey"),
                  primary_key=True),
        sa.Column("binding_key", sa.LargeBinary(32), nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.Column("height", sa.BigInteger, sa.ForeignKey("blocks.height", name="binding_codes_height_fkey"),
                  nullable=False),
        sa.PrimaryKeyConstraint("wallet_id", name="binding_codes_pkey"),
    )


def downgrade() -> None:
    op.drop_table("binding_codes")
    with op.batch_alter_table("wallets") as batch:
        batch.alter_column("public_key", existing_type=sa.LargeBinary(32), nullable=False)
