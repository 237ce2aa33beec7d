"""The billing horizon (docs/ledger.md, Memory): `session_billed` counts only the bills of blocks
since the horizon, so `billed_sessions` gets its block's time, filled from `blocks`; a snapshot
(v2) carries each charger's seq window (`snapshot_windows`) and only the receipts and OCPP bills
since the horizon, each with its block's time. An OCPP transaction id billed again after the
horizon is another bill: `ocpp_bills` is keyed by its block's height too.

A node that joined from a v1 snapshot holds its snapshot rows without their blocks' times: they
get the snapshot's block time, the latest they can have, so they count for at most the horizon
after the snapshot; its seq windows keep coming from its `snapshot_receipts`.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    blocks = sa.table("blocks", sa.column("height"), sa.column("time_ms", sa.BigInteger))
    base = sa.table("snapshot_base", sa.column("height"))
    base_ms = (sa.select(blocks.c.time_ms).where(blocks.c.height == sa.select(sa.func.max(base.c.height))
                                                 .scalar_subquery()).scalar_subquery())
    with op.batch_alter_table("billed_sessions") as batch:
        batch.add_column(sa.Column("time_ms", sa.BigInteger, nullable=True))
    sessions = sa.table("billed_sessions", sa.column("height"), sa.column("time_ms"))
    op.execute(sessions.update().values(
        time_ms=sa.select(blocks.c.time_ms).where(blocks.c.height == sessions.c.height).scalar_subquery()))
    with op.batch_alter_table("billed_sessions") as batch:
        batch.alter_column("time_ms", existing_type=sa.BigInteger, nullable=False)
    for name in ("snapshot_receipts", "snapshot_ocpp_bills"):
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("time_ms", sa.BigInteger, nullable=True))
        op.execute(sa.table(name, sa.column("time_ms")).update().values(time_ms=base_ms))
        with op.batch_alter_table(name) as batch:
            batch.alter_column("time_ms", existing_type=sa.BigInteger, nullable=False)
    # an OCPP transaction id repeated after the horizon is billed again: both bills keep their rows
    with op.batch_alter_table("ocpp_bills") as batch:
        batch.drop_constraint("ocpp_bills_pkey", type_="primary")
        batch.create_primary_key("ocpp_bills_pkey", ["charger_id", "transaction_id", "height"])
    op.create_table(
        "snapshot_windows",
        sa.Column("charger_id", sa.String(32),
                  sa.ForeignKey("chargers.charger_id", name="snapshot_windows_charger_id_fkey")),
        sa.Column("high", sa.BigInteger, nullable=False),
        sa.Column("bitmap", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("charger_id", name="snapshot_windows_pkey"),
    )


def downgrade() -> None:
    op.drop_table("snapshot_windows")
    with op.batch_alter_table("ocpp_bills") as batch:
        batch.drop_constraint("ocpp_bills_pkey", type_="primary")
        batch.create_primary_key("ocpp_bills_pkey", ["charger_id", "transaction_id"])
    for name in ("snapshot_ocpp_bills", "snapshot_receipts", "billed_sessions"):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("time_ms")
