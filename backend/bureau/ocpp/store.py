"""OCPP transactions in progress, kept in the node's database (`ocpp_transactions`) as well as in
memory: a node restarted in the middle of a transaction still has its readings when the stop
comes. Written before the charge point is answered; a row goes when the bill commits."""

from __future__ import annotations

import dataclasses
import json

import sqlalchemy as sa

from ..storage.tables import ocpp_transactions as table


class TransactionStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def load(self, make) -> list:
        """Every transaction kept, each made by `make(**fields)`."""
        with self.engine.connect() as conn:
            return [make(**json.loads(r.doc)) for r in conn.execute(sa.select(table.c.doc))]

    def save(self, t, now: int) -> None:
        row = {"charger_id": t.charger_id, "transaction_id": t.transaction_id,
               "doc": json.dumps(dataclasses.asdict(t), separators=(",", ":")), "updated_s": now}
        c = table.c
        with self.engine.begin() as conn:
            updated = conn.execute(table.update().where((c.charger_id == t.charger_id)
                                                        & (c.transaction_id == t.transaction_id))
                                   .values(doc=row["doc"], updated_s=now)).rowcount
            if not updated:
                conn.execute(table.insert(), row)

    def drop(self, idents: list[tuple[str, str]]) -> None:
        if not idents:
            return
        c = table.c
        with self.engine.begin() as conn:
            conn.execute(table.delete().where((c.charger_id == sa.bindparam("cp")) & (c.transaction_id == sa.bindparam("tid"))),
                         [{"cp": cp, "tid": tid} for cp, tid in idents])
