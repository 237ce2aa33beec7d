"""Card blocks: `cards.blocked` says a bound card is refused at authorization and left off the
offline list (docs/ledger.md, block_card). Every existing card is unblocked; unbinding a card
(unbind_card) deletes its row.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cards") as batch:
        batch.add_column(sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("cards") as batch:
        batch.drop_column("blocked")
