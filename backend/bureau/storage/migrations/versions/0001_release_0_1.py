"""The schema of release 0.1 (made by create_all then): every table, no foreign keys.

Revision ID: 0001
Revises:
"""

from alembic import op

from bureau.storage.migrations import schema_0001

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema_0001.metadata.create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    schema_0001.metadata.drop_all(op.get_bind(), checkfirst=False)
