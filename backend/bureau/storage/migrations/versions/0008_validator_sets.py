"""Validator-set changes: `validator_sets` holds each set decided on chain by change_validators,
the block that decided it, the height it is in force from, its v/set record and that record's
state proof (docs/consensus.md, docs/state.md). No existing row changes.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "validator_sets",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("height", sa.BigInteger, sa.ForeignKey("blocks.height", name="validator_sets_height_fkey"),
                  nullable=False),
        sa.Column("from_height", sa.BigInteger, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("proof", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="validator_sets_pkey"),
    )


def downgrade() -> None:
    op.drop_table("validator_sets")
