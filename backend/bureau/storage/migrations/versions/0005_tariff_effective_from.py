"""Tariff effective time: `tariffs.effective_from` (unix s) is when a published version comes in
force (docs/ledger.md, publish_tariff). A version published before the column existed came in
force with the block that committed it, so each row is filled with its block's time.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tariffs") as batch:
        batch.add_column(sa.Column("effective_from", sa.BigInteger, nullable=True))
    tariffs = sa.table("tariffs", sa.column("height"), sa.column("effective_from"))
    blocks = sa.table("blocks", sa.column("height"), sa.column("time_ms", sa.BigInteger))
    # whole seconds, rounded down, as the ledger reads a block's time (floor division on both backends)
    block_s = sa.select(blocks.c.time_ms // 1000).where(blocks.c.height == tariffs.c.height).scalar_subquery()
    op.execute(tariffs.update().values(effective_from=block_s))
    with op.batch_alter_table("tariffs") as batch:
        batch.alter_column("effective_from", existing_type=sa.BigInteger, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("tariffs") as batch:
        batch.drop_column("effective_from")
