"""Billing rules: `billed_sessions` holds the session id of every committed receipt and
`meter_marks` the readings of each charger meter's highest-seq committed receipt
(docs/ledger.md, Applying a receipt). Both are filled from the receipts already on the chain, so
an upgraded node refuses what a node that followed the chain from its start refuses.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from bureau.receipts.codec import decode

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sessions = op.create_table(
        "billed_sessions",
        sa.Column("charger_id", sa.String(32),
                  sa.ForeignKey("chargers.charger_id", name="billed_sessions_charger_id_fkey"), primary_key=True),
        sa.Column("session_id", sa.LargeBinary(16), primary_key=True),
        sa.Column("height", sa.BigInteger, sa.ForeignKey("blocks.height", name="billed_sessions_height_fkey"),
                  nullable=False),
        sa.PrimaryKeyConstraint("charger_id", "session_id", name="billed_sessions_pkey"),
    )
    marks = op.create_table(
        "meter_marks",
        sa.Column("charger_id", sa.String(32),
                  sa.ForeignKey("chargers.charger_id", name="meter_marks_charger_id_fkey"), primary_key=True),
        sa.Column("meter_serial", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("start_wh", sa.BigInteger, nullable=False),
        sa.Column("end_wh", sa.BigInteger, nullable=False),
        sa.Column("updated_height", sa.BigInteger,
                  sa.ForeignKey("blocks.height", name="meter_marks_updated_height_fkey"), nullable=False),
        sa.PrimaryKeyConstraint("charger_id", "meter_serial", name="meter_marks_pkey"),
    )
    receipts = sa.table("receipts", sa.column("height"), sa.column("idx"))
    txs = sa.table("txs", sa.column("height"), sa.column("idx"), sa.column("data"))
    rows = op.get_bind().execute(
        sa.select(txs.c.height, txs.c.data)
        .select_from(receipts.join(txs, (txs.c.height == receipts.c.height) & (txs.c.idx == receipts.c.idx)))
        .order_by(txs.c.height, txs.c.idx))
    billed: dict[tuple[str, bytes], int] = {}
    latest: dict[tuple[str, str], dict] = {}
    for height, data in rows:
        r, _, _ = decode(bytes(data)[1:])  # a receipt transaction: its kind byte, then the envelope
        billed.setdefault((r.charger_id, r.session_id), height)
        mark = latest.get((r.charger_id, r.meter_serial))
        if mark is None or r.seq > mark["seq"]:
            latest[(r.charger_id, r.meter_serial)] = {
                "charger_id": r.charger_id, "meter_serial": r.meter_serial, "seq": r.seq,
                "start_wh": r.meter_start_wh, "end_wh": r.meter_end_wh, "updated_height": height}
    if billed:
        op.bulk_insert(sessions, [{"charger_id": c, "session_id": s, "height": h} for (c, s), h in billed.items()])
    if latest:
        op.bulk_insert(marks, list(latest.values()))


def downgrade() -> None:
    op.drop_table("meter_marks")
    op.drop_table("billed_sessions")
